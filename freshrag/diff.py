"""The diff stage: which of a document's chunks are new, kept as they are, or stale."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from freshrag.model import Chunk, Item, Record, chunk_id


@dataclass
class DocDiff:
    """One document's chunks against what the index holds for it."""

    records: list[Record] = field(default_factory=list)  # to write (vectors come from embed)
    kept: list[str] = field(default_factory=list)  # unchanged chunks whose properties changed
    stale: list[str] = field(default_factory=list)  # the index's chunks the document lost


def diff(source: str, item: Item, chunks: list[Chunk], existing: Collection[str],
         properties_changed: bool, reembed: bool, now: float) -> DocDiff:
    """Chunk ids are deterministic (source, key, chunk hash, its repeat number): an id the
    index holds is the same chunk, written again only when every vector must be (`reembed`);
    its properties are re-written when the document's metadata or readers changed."""
    out = DocDiff()
    seen: dict[str, int] = {}
    new_ids = set()
    for c in chunks:
        n = seen.get(c.hash, 0)
        seen[c.hash] = n + 1
        cid = chunk_id(source, item.key, c.hash, n)
        new_ids.add(cid)
        if cid in existing and not reembed:
            if properties_changed:
                out.kept.append(cid)
        else:
            out.records.append(Record(
                id=cid, vector=[], text=c.text, source=source, doc_key=item.key,
                chunk_hash=c.hash, ordinal=c.ordinal, title=c.title or item.title,
                location=item.location, page=c.page, source_modified_at=item.modified_at,
                indexed_at=now, metadata=item.metadata, readers=list(item.readers)))
    out.stale = [i for i in existing if i not in new_ids]
    return out
