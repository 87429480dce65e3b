"""Readers in the index: every backend filters them inside the query (never after it)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freshrag.index import Index
from freshrag.index.lancedb import LanceIndex
from freshrag.index.weaviate import WeaviateIndex
from freshrag.model import EVERYONE, Filters, Mode, Record
from tests.contract.conftest import FAKE_MAXIMUM, Backend
from tests.contract.test_index_contract import DIM, mix, rec, unit

ALICE = frozenset({"user:alice"})
MODES = [Mode.vector, Mode.keyword, Mode.hybrid]


def secret_corpus() -> list[Record]:
    """60 chunks about kestrels nearest the query, readable by bob only, and 5 farther ones
    alice may read (3 of them through a group, 2 through everyone)."""
    out = [rec("docs", f"secret/{n}.md", f"kestrel kestrel falcon secret number {n}", n,
               vector=mix(0, 1, 0.99), readers=["user:bob"]) for n in range(60)]
    out += [rec("docs", f"team/{n}.md", f"kestrel notes for the team {n}", 100 + n,
                vector=mix(0, 1, 0.2), readers=["group:birds", "uid:1001"]) for n in range(3)]
    out += [rec("docs", f"open/{n}.md", f"a kestrel leaflet {n}", 200 + n,
                vector=mix(0, 1, 0.1), readers=[EVERYONE]) for n in range(2)]
    out.append(rec("docs", "closed.md", "kestrel facts nobody may read", 300,
                   vector=unit(0), readers=[]))
    return out


@pytest.fixture
def index(backend: Backend) -> Index:
    ix = backend.open(DIM)
    ix.upsert(secret_corpus())
    return ix


@pytest.mark.parametrize("mode", MODES)
def test_k_filled_with_readable_hits_under_many_unreadable_top_hits(index: Index,
                                                                     mode: Mode) -> None:
    filters = Filters(principals=frozenset({"group:birds"}))
    hits = index.search("kestrel falcon", unit(0), 5, mode, filters=filters)
    assert sorted(h.doc_key for h in hits) == sorted(
        [f"team/{n}.md" for n in range(3)] + [f"open/{n}.md" for n in range(2)])
    assert all(set(h.readers) & {"group:birds", EVERYONE} for h in hits)


@pytest.mark.parametrize("mode", MODES)
def test_no_principal_sees_everyone_only_and_admin_sees_all(index: Index, mode: Mode) -> None:
    mine = index.search("kestrel", unit(0), 10, mode, filters=Filters(principals=ALICE))
    assert sorted(h.doc_key for h in mine) == ["open/0.md", "open/1.md"]
    admin = index.search("kestrel", unit(0), 70, mode, filters=None)
    assert "closed.md" in {h.doc_key for h in admin}  # [] = admins only
    assert len(admin) == 66


def test_get_document_and_update_readers(index: Index) -> None:
    bob, birds = frozenset({"user:bob"}), frozenset({"group:birds"})
    assert index.get_document("docs", "secret/1.md", Filters(principals=birds)) == []
    [hit] = index.get_document("docs", "secret/1.md", Filters(principals=bob))
    assert hit.readers == ["user:bob"]
    index.update_metadata([hit.id], {}, 1.0, readers=["group:birds"])
    [again] = index.get_document("docs", "secret/1.md", Filters(principals=birds))
    assert again.readers == ["group:birds"] and again.text == hit.text
    assert index.vectors([hit.id])[hit.id] == pytest.approx(index.vectors([again.id])[again.id])
    index.update_metadata([hit.id], {}, 1.0, readers=[])
    assert index.get_document("docs", "secret/1.md", Filters(principals=birds)) == []
    assert [h.readers for h in index.get_document("docs", "secret/1.md")] == [[]]
    index.update_metadata([hit.id], {"x": 1}, 1.0)  # readers not given: kept
    assert [h.readers for h in index.get_document("docs", "secret/1.md")] == [[]]


def test_index_written_before_readers_reads_as_everyone(backend: Backend, tmp_path) -> None:
    """An index from before readers were stored: its chunks read as `everyone` (what they were),
    and a readers write then works."""
    r = rec("docs", "old.md", "an old kestrel chunk", 0)
    if backend.name == "lancedb":
        import lancedb

        old = LanceIndex(tmp_path / "old")
        old.upsert([r])
        table = lancedb.connect(str(tmp_path / "old")).open_table("chunks")
        table.drop_columns(["readers"])
        index: Index = LanceIndex(tmp_path / "old")
    else:
        fake = backend.fake
        if fake is None:
            pytest.skip("needs the fake (the old schema is made by hand)")
        name = f"Old{uuid.uuid4().hex[:10]}"
        old_ix = WeaviateIndex(fake.url, dim=DIM, collection=name, grpc_port=fake.grpc_port,
                               query_maximum_results=FAKE_MAXIMUM)
        old_ix.upsert([r])
        old_ix.close()
        with fake.store.lock:
            col = fake.store.get(name)
            col.schema["properties"] = [p for p in col.schema["properties"]
                                        if p["name"] != "readers"]
            for obj in col.objects.values():
                obj.props.pop("readers", None)
        index = WeaviateIndex(fake.url, dim=DIM, collection=name, grpc_port=fake.grpc_port,
                              query_maximum_results=FAKE_MAXIMUM)
        backend.opened.append(index)
    [hit] = index.search("kestrel", unit(0), 5, Mode.hybrid, filters=Filters(principals=ALICE))
    assert hit.readers == [EVERYONE]
    index.update_metadata([hit.id], {}, 1.0, readers=["user:bob"])
    assert index.search("kestrel", unit(0), 5, Mode.hybrid,
                        filters=Filters(principals=ALICE)) == []


PRINCIPALS = ["user:a", "user:b", "group:g", "gid:7", "uid:9"]


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(readers=st.lists(st.lists(st.sampled_from([*PRINCIPALS, EVERYONE]), max_size=3,
                                 unique=True), min_size=1, max_size=30),
       asker=st.sets(st.sampled_from(PRINCIPALS), max_size=3),
       k=st.integers(1, 8), mode=st.sampled_from(MODES))
def test_property_no_unreadable_hit_and_k_filled(backend: Backend, readers: list[list[str]],
                                                 asker: set[str], k: int, mode: Mode) -> None:
    """Whatever the readers and the asker: no hit the asker may not read, and k hits whenever
    k readable chunks match."""
    ix = _fresh(backend)
    records = [rec("docs", f"d{n}.md", f"kestrel document {n}", n, vector=mix(n, n + 1, 0.7),
                   readers=r) for n, r in enumerate(readers)]
    ix.upsert(records)
    allowed = set(asker) | {EVERYONE}
    readable = {r.doc_key for r in records if set(r.readers) & allowed}
    hits = ix.search("kestrel document", unit(0), k, mode,
                     filters=Filters(principals=frozenset(asker)))
    assert {h.doc_key for h in hits} <= readable
    assert len(hits) == min(k, len(readable))


def _fresh(backend: Backend) -> Index:
    """A new, empty index on the backend's kind of storage (one per example)."""
    if backend.name == "lancedb":
        import tempfile
        from pathlib import Path

        ix: Index = LanceIndex(Path(tempfile.mkdtemp(prefix="readers-")) / "index", dim=DIM)
    elif backend.fake is not None:
        ix = WeaviateIndex(backend.fake.url, dim=DIM,
                           collection=f"Prop{uuid.uuid4().hex[:12]}",
                           grpc_port=backend.fake.grpc_port, query_maximum_results=FAKE_MAXIMUM)
    else:
        ix = backend.make(DIM)  # real Weaviate: the fixture's collection (dropped after)
        for doc in list(ix.documents("docs")):
            ix.delete_document("docs", doc)
    backend.opened.append(ix)
    return ix
