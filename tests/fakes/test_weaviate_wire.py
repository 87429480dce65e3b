"""The Weaviate adapter on the wire: what it sends (schema, batches, filters, patches) and how it
fails (per-object errors, outages, refused connections, incompatible collections)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from weaviate.proto.v1 import base_pb2

from freshrag.index import IndexMisconfigured, IndexUnavailable, open_index
from freshrag.index.fusion import KEYWORD_DEPTH, pool_size
from freshrag.index.weaviate import BATCH_SIZE, ID_CHUNK, WeaviateIndex
from freshrag.model import Filters, Mode
from tests.contract.test_index_contract import DIM, corpus, rec, unit
from tests.fakes.weaviate_fake import FakeWeaviate, Limits, floats, free_port

OP = base_pb2.Filters


@pytest.fixture
def index(fake: FakeWeaviate) -> Iterator[WeaviateIndex]:
    ix = WeaviateIndex(fake.url, dim=DIM, grpc_port=fake.grpc_port, timeout_s=5)
    yield ix
    ix.close()


def leaves(f: Any) -> list[tuple[str, int, Any]]:
    """(property, operator, value) of every leaf of a gRPC filter tree."""
    if f.operator in (OP.OPERATOR_AND, OP.OPERATOR_OR):
        return [leaf for g in f.filters for leaf in leaves(g)]
    kind = f.WhichOneof("test_value")
    value = getattr(f, kind)
    value = list(value.values) if kind.endswith("_array") else value
    return [(f.target.property, f.operator, value)]


def test_open_index_routes_weaviate_urls(fake: FakeWeaviate, tmp_path: Any) -> None:
    ix = open_index(fake.url, tmp_path, dim=DIM, collection="Routed", api_key="",
                    grpc_port=fake.grpc_port, timeout_s=5.0)
    assert isinstance(ix, WeaviateIndex)
    ix.upsert(corpus())
    assert fake.objects("Routed")
    ix.close()


def test_schema_is_created_with_deliberate_index_flags(index: WeaviateIndex,
                                                       fake: FakeWeaviate) -> None:
    index.stats()
    (post,) = fake.rest_calls("POST", "/v1/schema")
    cls = json.loads(post.data)
    assert cls["class"] == "FreshragChunk"
    assert cls["vectorConfig"]["default"]["vectorizer"] == {"none": {}}
    assert cls["vectorConfig"]["default"]["vectorIndexConfig"]["distance"] == "cosine"
    props = {p["name"]: p for p in cls["properties"]}
    assert props["doc_key"]["tokenization"] == "field"
    assert props["doc_key"]["indexFilterable"] and not props["doc_key"]["indexSearchable"]
    assert props["source"]["tokenization"] == "field"
    assert props["metadata_kv"]["dataType"] == ["text[]"]
    assert props["metadata_kv"]["tokenization"] == "field"
    assert props["text"]["indexSearchable"] and props["text"]["tokenization"] == "word"
    assert not props["metadata_json"]["indexSearchable"]
    assert not props["metadata_json"]["indexFilterable"]
    index.close()
    WeaviateIndex(fake.url, grpc_port=fake.grpc_port).stats()  # second open: no create
    assert len(fake.rest_calls("POST", "/v1/schema")) == 1


def test_batches_carry_properties_and_named_vectors(index: WeaviateIndex,
                                                    fake: FakeWeaviate) -> None:
    records = [rec("docs", f"k{i}", f"text {i}", i, metadata={"n": i, "team": "a"})
               for i in range(2 * BATCH_SIZE + 50)]
    index.upsert(records)
    batches = fake.grpc_calls("BatchObjects")
    assert [len(b.objects) for b in batches] == [BATCH_SIZE, BATCH_SIZE, 50]
    first = batches[0].objects[3]
    assert first.uuid == records[3].id and first.collection == "FreshragChunk"
    (vec,) = first.vectors
    assert vec.name == "default" and floats(vec.vector_bytes) == unit(3)
    struct = first.properties.non_ref_properties.fields
    assert struct["doc_key"].string_value == "k3"
    assert struct["metadata_json"].string_value == '{"n":3,"team":"a"}'
    assert "page" not in struct  # None is left out, read back as None
    arrays = {a.prop_name: list(a.values) for a in first.properties.text_array_properties}
    assert arrays == {"metadata_kv": ['n=3', 'team="a"'], "readers": ["everyone"]}
    assert len(fake.objects()) == len(records)


def test_reads_send_exact_filters(index: WeaviateIndex, fake: FakeWeaviate) -> None:
    index.upsert(corpus())
    fake.calls.clear()
    index.ids_for("docs", "guide/intro.md")
    (search,) = fake.grpc_calls("Search")
    assert sorted(leaves(search.filters)) == [("doc_key", OP.OPERATOR_EQUAL, "guide/intro.md"),
                                              ("source", OP.OPERATOR_EQUAL, "docs")]
    # source and doc_key come back for the exact re-check (the server's FIELD equality trims)
    assert sorted(search.properties.non_ref_properties) == ["chunk_hash", "doc_key", "source"]
    assert search.offset == 0


def test_hybrid_sends_a_near_vector_and_a_deeper_bm25_both_filtered(
        index: WeaviateIndex, fake: FakeWeaviate) -> None:
    index.upsert(corpus())
    fake.calls.clear()
    index.search("falcon", unit(4), 3, Mode.hybrid, alpha=0.3, filters=Filters(
        source="docs", doc_key_prefix="guide/", metadata={"team": "birds", "level": 1}))
    searches = fake.grpc_calls("Search")
    assert not [s for s in searches if s.HasField("hybrid_search")]  # fused here, not there
    (near,) = [s for s in searches if s.HasField("near_vector")]
    (bm25,) = [s for s in searches if s.HasField("bm25_search")]
    for search in (near, bm25):
        assert sorted(leaves(search.filters)) == sorted([
            ("source", OP.OPERATOR_EQUAL, "docs"), ("doc_key", OP.OPERATOR_LIKE, "guide/*"),
            ("metadata_kv", OP.OPERATOR_CONTAINS_ALL, ["level=1", 'team="birds"'])])
        assert search.offset == 0
    nv = near.near_vector
    sent = nv.vector_bytes or nv.vectors[0].vector_bytes
    assert floats(sent) == unit(4)
    assert list(nv.targets.target_vectors) == ["default"]
    assert near.limit == pool_size(12)  # k * 4 (room for the exact post-filter), pooled
    assert bm25.bm25_search.query == "falcon" and list(bm25.bm25_search.properties) == ["text"]
    assert bm25.limit == KEYWORD_DEPTH * pool_size(12)


def test_hybrid_asks_each_query_word_alone_for_the_keyword_ceiling(
        index: WeaviateIndex, fake: FakeWeaviate) -> None:
    index.upsert(corpus())
    fake.calls.clear()
    filters = Filters(source="docs", doc_key_prefix="guide/")
    index.search("Falcon nest, falcon", unit(4), 3, Mode.hybrid, alpha=0.3, filters=filters)
    bm25 = [s for s in fake.grpc_calls("Search") if s.HasField("bm25_search")]
    # the deep list, then one limit-1 query per distinct word, each with the request's filters
    assert [(s.bm25_search.query, s.limit) for s in bm25] == [
        ("Falcon nest, falcon", KEYWORD_DEPTH * pool_size(12)), ("falcon", 1), ("nest", 1)]
    for search in bm25:
        assert sorted(leaves(search.filters)) == sorted([
            ("source", OP.OPERATOR_EQUAL, "docs"), ("doc_key", OP.OPERATOR_LIKE, "guide/*")])


def test_hybrid_requests_stay_within_query_maximum_results() -> None:
    maximum = 30
    fake = FakeWeaviate(Limits(query_maximum_results=maximum)).start()
    ix = WeaviateIndex(fake.url, dim=DIM, grpc_port=fake.grpc_port, timeout_s=5,
                       query_maximum_results=maximum)
    try:
        # Keyword hits with vectors far from the query: keyword-only candidates whose stored
        # vectors are read back, in reads of at most `maximum` ids.
        ix.upsert([rec("docs", f"k{i}", f"falcon note {i}", i, vector=unit(i % 3 + 1))
                   for i in range(2 * maximum)]
                  + [rec("docs", f"v{i}", f"other text {i}", i, vector=unit(0))
                     for i in range(2 * maximum)])
        fake.calls.clear()
        hits = ix.search("falcon", unit(0), 5, Mode.hybrid, alpha=0.5)
        searches = fake.grpc_calls("Search")
        assert {s.limit for s in searches if s.HasField("bm25_search")} == {maximum}
        assert {s.limit for s in searches if s.HasField("near_vector")} == {maximum}
        assert all(0 < s.limit <= maximum for s in searches)
        assert len(hits) == 5
    finally:
        ix.close()
        fake.stop()


def test_update_metadata_patches_properties_only(index: WeaviateIndex,
                                                 fake: FakeWeaviate) -> None:
    index.upsert(corpus())
    ids = list(index.ids_for("docs", "guide/intro.md"))
    vectors = {i: fake.objects()[i].vectors for i in ids}
    fake.http.log.clear()
    index.update_metadata(ids, {"team": "x"}, 5.0)
    patches = fake.rest_calls("PATCH", "/v1/objects/FreshragChunk/")
    assert len(patches) == len(ids)
    for p in patches:
        body = json.loads(p.data)
        assert "vector" not in body and "vectors" not in body
        assert body["properties"] == {"metadata_json": '{"team":"x"}',
                                      "metadata_kv": ['team="x"'], "source_modified_at": 5.0}
    assert {i: fake.objects()[i].vectors for i in ids} == vectors
    assert not fake.grpc_calls("BatchObjects")[1:]  # nothing re-sent


def test_deletes_by_id_chunks_and_by_document_filter(index: WeaviateIndex,
                                                     fake: FakeWeaviate) -> None:
    records = [rec("docs", "big", f"t{i}", i) for i in range(ID_CHUNK * 2 + 10)]
    index.upsert(records)
    index.delete([r.id for r in records[:ID_CHUNK + 5]])
    deletes = fake.grpc_calls("BatchDelete")
    assert [len(leaves(d.filters)[0][2]) for d in deletes] == [ID_CHUNK, 5]
    assert {leaves(d.filters)[0][:2] for d in deletes} == {("_id", OP.OPERATOR_CONTAINS_ANY)}
    fake.calls.clear()
    assert index.delete_document("docs", "big") == ID_CHUNK + 5
    # by id, never by the document filter (the server's FIELD equality would widen it)
    deletes = fake.grpc_calls("BatchDelete")
    assert {leaves(d.filters)[0][:2] for d in deletes} == {("_id", OP.OPERATOR_CONTAINS_ANY)}
    assert not fake.objects()


def test_failed_objects_are_retried_then_written(index: WeaviateIndex,
                                                 fake: FakeWeaviate) -> None:
    records = corpus()
    fake.faults.object_errors = {records[1].id: 2}
    index.upsert(records)
    assert [len(b.objects) for b in fake.grpc_calls("BatchObjects")] == [5, 1, 1]
    assert set(fake.objects()) == {r.id for r in records}


def test_objects_failing_every_attempt_raise_naming_them(index: WeaviateIndex,
                                                         fake: FakeWeaviate) -> None:
    records = corpus()
    fake.faults.object_errors = {records[2].id: 99}
    with pytest.raises(IndexUnavailable, match=records[2].id) as err:
        index.upsert(records)
    assert fake.url in str(err.value) and "injected object failure" in str(err.value)
    assert records[2].id not in fake.objects()


def test_grpc_outage_is_index_unavailable_with_the_url(index: WeaviateIndex,
                                                       fake: FakeWeaviate) -> None:
    index.stats()
    fake.faults.grpc_errors = 50
    with pytest.raises(IndexUnavailable, match="127.0.0.1.*injected outage"):
        index.upsert(corpus())
    with pytest.raises(IndexUnavailable, match="127.0.0.1.*injected outage"):
        index.ids_for("docs", "x")
    fake.faults.grpc_errors = 0
    index.upsert(corpus())  # the same index object recovers
    assert len(fake.objects()) == 5


def test_connection_refused_is_quick_and_names_the_url() -> None:
    url = f"weaviate://127.0.0.1:{free_port()}"
    ix = WeaviateIndex(url, grpc_port=free_port(), timeout_s=2)
    started = time.monotonic()
    with pytest.raises(IndexUnavailable, match=url.replace(".", r"\.")):
        ix.search("x", None, 3, Mode.keyword)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("change, message", [
    ({"doc_key": {"tokenization": "word"}}, "doc_key.*tokenization word"),
    ({"source": {"dataType": ["int"]}}, "source.*is int"),
    ({"vectorizer": "text2vec-openai"}, "vectorizer text2vec-openai"),
    ({"drop": "metadata_kv"}, "metadata_kv.*missing"),
])
def test_incompatible_collection_is_a_clear_error_never_recreated(
        fake: FakeWeaviate, change: dict[str, Any], message: str) -> None:
    ix = WeaviateIndex(fake.url, grpc_port=fake.grpc_port, collection="Old")
    ix.stats()
    ix.close()
    schema = fake.store.get("Old").schema
    props = {p["name"]: p for p in schema["properties"]}
    for name, patch in change.items():
        if name == "vectorizer":
            schema["vectorConfig"]["default"]["vectorizer"] = {patch: {}}
        elif name == "drop":
            schema["properties"] = [p for p in schema["properties"] if p["name"] != patch]
        else:
            props[name].update(patch)
    fake.http.log.clear()
    again = WeaviateIndex(fake.url, grpc_port=fake.grpc_port, collection="Old")
    with pytest.raises(IndexMisconfigured, match="incompatible schema") as err:
        again.upsert(corpus())
    assert pytest.importorskip("re").search(message, str(err.value)), str(err.value)
    assert not fake.rest_calls("DELETE", "/v1/schema") and not fake.rest_calls("POST", "/v1/")


def test_other_dimension_on_open_is_a_clear_error(fake: FakeWeaviate) -> None:
    WeaviateIndex(fake.url, grpc_port=fake.grpc_port).upsert(corpus())
    ix = WeaviateIndex(fake.url, dim=DIM * 2, grpc_port=fake.grpc_port)
    with pytest.raises(IndexUnavailable, match=f"{DIM * 2} dimensions.*holds {DIM}"):
        ix.search("x", unit(0, DIM * 2), 3)


def test_weaviate_cloud_needs_an_api_key() -> None:
    ix = WeaviateIndex("https://abc.c0.europe-west3.gcp.weaviate.cloud")
    assert ix.endpoint.grpc_host == "grpc-abc.c0.europe-west3.gcp.weaviate.cloud"
    with pytest.raises(IndexMisconfigured, match="api_key"):
        ix.stats()
