"""The diff stage: deterministic ids decide what is written, kept or stale."""

from __future__ import annotations

from freshrag.diff import diff
from freshrag.model import Chunk, Fingerprint, Item, chunk_id, content_hash


def _chunks(*texts: str) -> list[Chunk]:
    return [Chunk(t, "", None, n, content_hash(t)) for n, t in enumerate(texts)]


ITEM = Item("a.md", b"", Fingerprint(1, 1), 5.0, "/d/a.md", readers=["group:hr"])


def _ids(chunks: list[Chunk]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for c in chunks:
        seen[c.hash] = seen.get(c.hash, -1) + 1
        out.append(chunk_id("docs", "a.md", c.hash, seen[c.hash]))
    return out


def test_an_edit_writes_only_the_new_chunk_and_drops_the_old() -> None:
    before, after = _chunks("one", "two", "three"), _chunks("one", "TWO", "three")
    d = diff("docs", ITEM, after, set(_ids(before)), False, False, 9.0)
    assert [r.text for r in d.records] == ["TWO"] and d.kept == []
    assert d.stale == [_ids(before)[1]]
    assert d.records[0].readers == ["group:hr"] and d.records[0].indexed_at == 9.0


def test_a_repeated_chunk_has_its_own_id_and_a_metadata_change_keeps_vectors() -> None:
    chunks = _chunks("same", "same")
    first = diff("docs", ITEM, chunks, set(), True, False, 1.0)
    assert len({r.id for r in first.records}) == 2
    again = diff("docs", ITEM, chunks, {r.id for r in first.records}, True, False, 2.0)
    assert again.records == [] and sorted(again.kept) == sorted(r.id for r in first.records)
    assert diff("docs", ITEM, chunks, set(_ids(chunks)), False, False, 2.0).kept == []


def test_reembed_rewrites_every_chunk() -> None:
    chunks = _chunks("one", "two")
    d = diff("docs", ITEM, chunks, set(_ids(chunks)), False, True, 3.0)
    assert [r.text for r in d.records] == ["one", "two"] and d.stale == []
