"""Each server rule the Weaviate fake copies (tests/fakes/weaviate_rules.py), checked through the
real weaviate-client, and the adapter's answer to it. Every test here fails when its rule is
taken out of the fake."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import weaviate
from weaviate.classes.init import Auth
from weaviate.classes.query import Filter, HybridFusion
from weaviate.exceptions import (
    UnexpectedStatusCodeError,
    WeaviateBaseError,
    WeaviateInsertManyAllFailedError,
    WeaviateQueryError,
)

from freshrag.index import IndexMisconfigured, IndexUnavailable
from freshrag.index.weaviate import WeaviateIndex
from freshrag.model import Mode
from tests.contract.test_index_contract import DIM, corpus, rec, unit
from tests.fakes.weaviate_fake import FakeWeaviate, Limits

Make = Callable[..., FakeWeaviate]


@pytest.fixture
def make_fake() -> Iterator[Make]:
    started: list[FakeWeaviate] = []

    def make(**limits: Any) -> FakeWeaviate:
        fake = FakeWeaviate(Limits(**limits)).start()
        started.append(fake)
        return fake
    yield make
    for fake in started:
        fake.stop()


@pytest.fixture
def opened() -> Iterator[list[Any]]:
    handles: list[Any] = []
    yield handles
    for h in handles:
        h.close()


def adapter(fake: FakeWeaviate, opened: list[Any], **kw: Any) -> WeaviateIndex:
    kw.setdefault("dim", DIM)
    ix = WeaviateIndex(fake.url, grpc_port=fake.grpc_port, timeout_s=5, **kw)
    opened.append(ix)
    return ix


def client(fake: FakeWeaviate, opened: list[Any], key: str = "") -> Any:
    c = weaviate.connect_to_local("127.0.0.1", fake.http.port, fake.grpc_port,
                                  auth_credentials=Auth.api_key(key) if key else None)
    opened.append(c)
    return c


def doc(key: str, n: int, source: str = "docs") -> list[Any]:
    return [rec(source, key, f"chunk {i} of {key}", i) for i in range(n)]


# QUERY_MAXIMUM_RESULTS --------------------------------------------------------------------------
def test_offset_plus_limit_over_the_maximum_is_refused(make_fake: Make, opened: list[Any]
                                                       ) -> None:
    fake = make_fake(query_maximum_results=10)
    adapter(fake, opened).upsert(doc("big.md", 25))
    col = client(fake, opened).collections.get("FreshragChunk")
    assert len(col.query.fetch_objects(limit=5, offset=5).objects) == 5
    with pytest.raises(WeaviateQueryError, match="query maximum results exceeded"):
        col.query.fetch_objects(limit=5, offset=6)
    with pytest.raises(WeaviateQueryError, match="query maximum results exceeded"):
        list(col.iterator(cache_size=11))  # a cursor page counts too


def test_adapter_reads_any_document_size_under_a_small_maximum(make_fake: Make,
                                                               opened: list[Any]) -> None:
    fake = make_fake(query_maximum_results=10)
    ix = adapter(fake, opened, query_maximum_results=10)
    big = doc("big.md", 45)
    ix.upsert(big + doc("other.md", 3))
    assert ix.ids_for("docs", "big.md") == {r.id: r.chunk_hash for r in big}
    assert [h.ordinal for h in ix.get_document("docs", "big.md")] == list(range(45))
    assert ix.documents("docs") == {"big.md": 45, "other.md": 3}
    assert len(ix.vectors([r.id for r in big])) == 45
    searches = fake.grpc_calls("Search")
    assert all(s.offset + s.limit <= 10 for s in searches)
    assert ix.delete_document("docs", "big.md") == 45
    assert ix.documents("docs") == {"other.md": 3}


def test_identical_chunks_beyond_a_page_are_read_by_id(make_fake: Make,
                                                       opened: list[Any]) -> None:
    fake = make_fake(query_maximum_results=10)
    ix = adapter(fake, opened, query_maximum_results=10)
    same = [rec("docs", "rep.md", "the same line", i, n=i) for i in range(23)]
    ix.upsert(same)
    assert set(ix.ids_for("docs", "rep.md")) == {r.id for r in same}


def test_a_limit_above_the_servers_is_misconfigured_naming_the_setting(
        make_fake: Make, opened: list[Any]) -> None:
    fake = make_fake(query_maximum_results=10)
    ix = adapter(fake, opened)  # index.query_maximum_results left at 10,000
    ix.upsert(doc("a.md", 3))
    with pytest.raises(IndexMisconfigured, match="index.query_maximum_results"):
        ix.ids_for("docs", "a.md")


def test_batch_delete_deletes_at_most_the_maximum_and_reports_every_match(
        make_fake: Make, opened: list[Any]) -> None:
    fake = make_fake(query_maximum_results=10)
    adapter(fake, opened, query_maximum_results=10).upsert(doc("big.md", 25))
    col = client(fake, opened).collections.get("FreshragChunk")
    res = col.data.delete_many(where=Filter.by_property("doc_key").equal("big.md"))
    assert (res.matches, res.successful) == (25, 10)
    assert len(fake.objects()) == 15


def test_adapter_deletes_everything_whatever_the_servers_limit(make_fake: Make,
                                                               opened: list[Any]) -> None:
    fake = make_fake(query_maximum_results=10)
    ix = adapter(fake, opened, query_maximum_results=10)
    ix.upsert(doc("big.md", 25))
    ix.delete([r.id for r in doc("big.md", 25)])
    assert fake.objects() == {}
    ix.upsert(doc("big.md", 25))
    assert ix.delete_document("docs", "big.md") == 25
    assert fake.objects() == {}


# FIELD tokenization trims -----------------------------------------------------------------------
def test_field_equality_ignores_surrounding_whitespace(make_fake: Make, opened: list[Any]
                                                       ) -> None:
    fake = make_fake()
    adapter(fake, opened).upsert([rec("docs", "x.md", "one"), rec("docs", "x.md ", "two"),
                                  rec("docs", "\u00a0x.md", "three"), rec("docs", "x.mdx", "4")])
    col = client(fake, opened).collections.get("FreshragChunk")
    for value in ("x.md", " x.md\t"):
        got = col.query.fetch_objects(filters=Filter.by_property("doc_key").equal(value))
        assert sorted(o.properties["doc_key"] for o in got.objects) == [
            "x.md", "x.md ", "\u00a0x.md"], value
    like = col.query.fetch_objects(filters=Filter.by_property("doc_key").like("x.md "))
    assert len(like.objects) == 3


def test_adapter_keeps_whitespace_twins_apart(make_fake: Make, opened: list[Any]) -> None:
    fake = make_fake()
    ix = adapter(fake, opened)
    a, b = doc("x.md", 2), doc("x.md ", 3)
    ix.upsert(a + b)
    assert set(ix.ids_for("docs", "x.md")) == {r.id for r in a}
    assert {h.doc_key for h in ix.get_document("docs", "x.md ")} == {"x.md "}
    assert ix.delete_document("docs", "x.md") == 2
    assert set(ix.ids_for("docs", "x.md ")) == {r.id for r in b}


# BM25: Unicode words, English stopwords, repeated terms -----------------------------------------
def test_bm25_splits_unicode_words(make_fake: Make, opened: list[Any]) -> None:
    fake = make_fake()
    ix = adapter(fake, opened)
    ix.upsert([rec("docs", "de.md", "Die Größe des Cafés", 0), rec("docs", "en.md", "x", 1)])
    assert ix.search("caf", None, 5, Mode.keyword) == []
    assert [h.doc_key for h in ix.search("CAFÉS", None, 5, Mode.keyword)] == ["de.md"]
    assert [h.doc_key for h in ix.search("größe", None, 5, Mode.keyword)] == ["de.md"]


def test_bm25_drops_english_stopwords_from_the_query(make_fake: Make, opened: list[Any]
                                                      ) -> None:
    fake = make_fake()
    ix = adapter(fake, opened)
    ix.upsert(corpus())  # "Kestrel is a falcon that ...", "Install the package ..."
    assert ix.search("the", None, 5, Mode.keyword) == []
    assert ix.search("is a that", None, 5, Mode.keyword) == []
    assert {h.ordinal for h in ix.search("the kestrel", None, 5, Mode.keyword)} == {0, 3}


def test_bm25_boosts_repeated_query_terms(make_fake: Make, opened: list[Any]) -> None:
    fake = make_fake()
    ix = adapter(fake, opened)
    a, b = rec("docs", "a.md", "kestrel meadow", 0), rec("docs", "b.md", "falcon meadow", 1)
    ix.upsert([a, b])
    first = "a.md" if a.id < b.id else "b.md"  # a tie is broken by id
    loser = "b.md" if first == "a.md" else "a.md"
    query = "kestrel kestrel falcon" if loser == "a.md" else "falcon falcon kestrel"
    assert ix.search(query, None, 2, Mode.keyword)[0].doc_key == loser


# hybrid -----------------------------------------------------------------------------------------
def test_hybrid_alpha_zero_runs_no_vector_search(make_fake: Make, opened: list[Any]) -> None:
    fake = make_fake()
    adapter(fake, opened).upsert(corpus())
    col = client(fake, opened).collections.get("FreshragChunk")
    res = col.query.hybrid("kestrel", vector=unit(2), alpha=0.0, target_vector="default",
                           fusion_type=HybridFusion.RELATIVE_SCORE, limit=10)
    assert len(res.objects) == 2  # only the keyword hits, no score-0 vector padding


def test_hybrid_alpha_one_runs_no_keyword_search(make_fake: Make, opened: list[Any]) -> None:
    # At alpha 1 the keyword sub-search never runs, so nor does its searchable check
    # (bm25_searcher.go:92-95): the only place the short-cut shows from outside.
    fake = make_fake()
    adapter(fake, opened).upsert(corpus())
    col = client(fake, opened).collections.get("FreshragChunk")
    res = col.query.hybrid("kestrel", vector=unit(2), alpha=1.0, target_vector="default",
                           query_properties=["title"], limit=3)
    assert res.objects[0].properties["ordinal"] == 2
    with pytest.raises(WeaviateQueryError, match="indexSearchable"):
        col.query.hybrid("kestrel", vector=unit(2), alpha=0.5, target_vector="default",
                         query_properties=["title"], limit=3)


def test_hybrid_fuses_at_most_the_candidate_pool_per_side(make_fake: Make,
                                                          opened: list[Any]) -> None:
    fake = make_fake(hybrid_maximum_results=3)
    adapter(fake, opened).upsert([rec("docs", f"d{i}", "plain", i, vector=unit(i % 8))
                                  for i in range(10)])
    col = client(fake, opened).collections.get("FreshragChunk")
    res = col.query.hybrid("nothing", vector=unit(0), alpha=0.5, target_vector="default",
                           fusion_type=HybridFusion.RELATIVE_SCORE, limit=2, offset=2)
    assert len(res.objects) == 1  # pool max(3, 2) = 3 candidates, page [2:4]


# schema: names, index flags, auto-schema, tenants -----------------------------------------------
def test_collection_names_are_validated(make_fake: Make, opened: list[Any]) -> None:
    fake = make_fake()
    c = client(fake, opened)
    for bad in ("my-chunks", "Chunks.v2", "9lives", "_x"):
        with pytest.raises(UnexpectedStatusCodeError, match="not a valid class name") as err:
            c.collections.create(bad)
        assert err.value.status_code == 422
    c.collections.create("lowerStart")
    assert fake.store.get("LowerStart").schema["class"] == "LowerStart"


def test_adapter_names_index_collection_for_a_refused_name(make_fake: Make,
                                                           opened: list[Any]) -> None:
    fake = make_fake()
    with pytest.raises(IndexMisconfigured, match="index.collection"):
        adapter(fake, opened, collection="my-chunks").upsert(corpus())
    assert not fake.grpc_calls("BatchObjects")


def test_filters_and_bm25_need_the_index_flags(make_fake: Make, opened: list[Any]) -> None:
    fake = make_fake()
    adapter(fake, opened).upsert(corpus())
    col = client(fake, opened).collections.get("FreshragChunk")
    with pytest.raises(WeaviateQueryError, match="indexFilterable"):
        col.query.fetch_objects(filters=Filter.by_property("ordinal").equal(1))
    with pytest.raises(WeaviateQueryError, match="indexFilterable"):
        col.query.fetch_objects(filters=Filter.by_property("metadata_json").equal("{}"))
    with pytest.raises(WeaviateQueryError, match="indexSearchable"):
        col.query.bm25("kestrel", query_properties=["title"])
    assert col.query.fetch_objects(filters=Filter.by_property("source").equal("docs")).objects


def test_writes_to_a_missing_collection_fail_without_auto_schema(make_fake: Make,
                                                                 opened: list[Any]) -> None:
    fake = make_fake()
    col = client(fake, opened).collections.get("Missing")
    with pytest.raises(WeaviateInsertManyAllFailedError, match="not present in schema"):
        col.data.insert_many([{"doc_key": "a"}])
    assert fake.store.collections == {}


def test_auto_schema_infers_the_wrong_schema(make_fake: Make, opened: list[Any]) -> None:
    fake = make_fake(autoschema=True)
    client(fake, opened).collections.get("Auto").data.insert_many(
        [{"doc_key": "a/the.md", "ordinal": 3}])
    props = {p["name"]: p for p in fake.store.get("Auto").schema["properties"]}
    assert props["doc_key"]["tokenization"] == "word" and props["ordinal"]["dataType"] == [
        "number"]


def test_adapter_recreates_a_collection_deleted_under_it(make_fake: Make, opened: list[Any]
                                                         ) -> None:
    fake = make_fake()
    ix = adapter(fake, opened)
    ix.upsert(corpus())
    with fake.store.lock:
        fake.store.collections.clear()
    with pytest.raises(IndexUnavailable, match="gone"):
        ix.upsert(corpus())
    ix.upsert(corpus())  # the engine's retry: re-opened, created with freshrag's schema
    props = {p["name"]: p for p in fake.store.get("FreshragChunk").schema["properties"]}
    assert props["doc_key"]["tokenization"] == "field"


def test_a_multi_tenant_collection_refuses_requests_without_a_tenant(
        make_fake: Make, opened: list[Any]) -> None:
    fake = make_fake()
    adapter(fake, opened, collection="Tenanted").upsert(corpus())
    fake.store.get("Tenanted").schema["multiTenancyConfig"] = {
        "enabled": True, "autoTenantCreation": False, "autoTenantActivation": False}
    col = client(fake, opened).collections.get("Tenanted")
    with pytest.raises(WeaviateQueryError, match="multi-tenancy enabled"):
        col.query.fetch_objects(limit=1)
    with pytest.raises(WeaviateInsertManyAllFailedError, match="multi-tenancy enabled"):
        col.data.insert_many([{"doc_key": "a"}])
    with pytest.raises(IndexMisconfigured, match="multi-tenancy is enabled.*index.collection"):
        adapter(fake, opened, collection="Tenanted").stats()


# API key ----------------------------------------------------------------------------------------
def test_api_key_is_required_when_configured(make_fake: Make, opened: list[Any]) -> None:
    fake = make_fake(api_key="s3cret")
    with pytest.raises(WeaviateBaseError):
        client(fake, opened)  # REST /v1/meta: 401
    right = client(fake, opened, "s3cret")
    assert not right.collections.exists("FreshragChunk")
    for key in ("", "wrong"):
        with pytest.raises(IndexMisconfigured, match="index.api_key"):
            adapter(fake, opened, api_key=key).upsert(corpus())
    ix = adapter(fake, opened, api_key="s3cret")
    ix.upsert(corpus())
    assert ix.stats()["docs"].chunks == 4


def test_grpc_refuses_a_wrong_key(make_fake: Make, opened: list[Any]) -> None:
    fake = make_fake(api_key="s3cret")
    adapter(fake, opened, api_key="s3cret").upsert(corpus())
    fake.limits.api_key = "rotated"  # REST handshake done: the next gRPC call has the old key
    col = opened[-1]._col()
    with pytest.raises(WeaviateQueryError, match="invalid api key"):
        col.query.fetch_objects(limit=1)
    with pytest.raises(IndexMisconfigured, match="index.api_key"):
        opened[-1].ids_for("docs", "guide/intro.md")


def test_objects_refused_for_a_setting_are_misconfigured(make_fake: Make,
                                                         opened: list[Any]) -> None:
    fake = make_fake()
    ix = adapter(fake, opened, collection="Tenanted")
    ix.upsert(corpus())  # opened and checked while single-tenant
    fake.store.get("Tenanted").schema["multiTenancyConfig"] = {"enabled": True}
    with pytest.raises(IndexMisconfigured, match="index.collection"):
        ix.upsert(corpus())
