"""Core value types shared by every stage of the data path."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Fixed namespace: chunk ids must be stable across machines and releases.
CHUNK_NAMESPACE = uuid.UUID("6f1c2a52-4d0e-4c1b-9a55-5f7e0c3b9a11")
UNIT_SEP = "\x1f"


def content_hash(data: bytes | str) -> str:
    """Hex sha256 of bytes (or UTF-8 text)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def chunk_id(source: str, key: str, chunk_hash: str, n: int) -> str:
    """Deterministic object id: same content in the same document, same id."""
    name = UNIT_SEP.join((source, key, chunk_hash, str(n)))
    return str(uuid.uuid5(CHUNK_NAMESPACE, name))


class Mode(StrEnum):
    hybrid = "hybrid"
    vector = "vector"
    keyword = "keyword"


@dataclass(frozen=True)
class Fingerprint:
    """What a cheap scan sees of an item without reading it."""

    mtime_ns: int
    size: int
    inode: int = 0
    # who may read it, as a short hash of what decides that (modes, owners, ACLs of the file and
    # its folders); "" when the source does not capture readers. A change is a metadata change.
    perm: str = ""


@dataclass(frozen=True)
class Candidate:
    """An item that may have changed, as a source's detect step names it."""

    key: str
    fingerprint: Fingerprint | None  # None: the item no longer exists (or is skipped)
    error: str | None = None  # the item exists but cannot be taken (reported, never dropped)
    skipped: str | None = None  # exists, but is of a type freshrag does not index (listed)


@dataclass(frozen=True)
class Item:
    """One document's bytes as read from a source."""

    key: str
    data: bytes
    fingerprint: Fingerprint
    modified_at: float  # unix seconds
    location: str
    filename: str = ""  # name used to pick a parser (by extension)
    metadata: dict[str, Any] = field(default_factory=dict)
    text: str | None = None  # a source that renders its own text (table rows) sets this
    title: str = ""  # the hits' title when the parser finds none (a table row's first line)
    # principals who may read it (see Record.readers); [] with readers_error set when they
    # could not be determined (fail closed)
    readers: list[str] = field(default_factory=lambda: [EVERYONE])
    readers_error: str | None = None


@dataclass(frozen=True)
class Element:
    """A parsed piece of a document: a title, a paragraph, a list item, a table."""

    text: str
    kind: str = "text"  # "title" starts a section
    page: int | None = None
    depth: int = 0  # heading depth where known


@dataclass(frozen=True)
class Chunk:
    """A unit of retrieval, before it has a vector or an id."""

    text: str  # exactly what is embedded and indexed
    title: str
    page: int | None
    ordinal: int
    hash: str


@dataclass
class Record:
    """A chunk as stored in the index."""

    id: str
    vector: list[float]
    text: str
    source: str
    doc_key: str
    chunk_hash: str
    ordinal: int
    title: str
    location: str
    page: int | None
    source_modified_at: float
    indexed_at: float
    metadata: dict[str, Any] = field(default_factory=dict)
    # principals who may read this chunk (`user:alice`, `group:hr`, `everyone`); [] = nobody but
    # admins (readers could not be determined: fail closed)
    readers: list[str] = field(default_factory=lambda: [EVERYONE])


EVERYONE = "everyone"


@dataclass(frozen=True)
class Filters:
    source: str | None = None
    doc_key_prefix: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # None: no restriction (admin, CLI without --as). A set: only chunks whose readers include
    # one of these principals or `everyone`; enforced inside the index query, never after it.
    principals: frozenset[str] | None = None


@dataclass
class Hit:
    text: str
    score: float
    source: str
    doc_key: str
    location: str
    title: str
    page: int | None
    metadata: dict[str, Any]
    source_modified_at: float
    indexed_at: float
    id: str = ""
    chunk_hash: str = ""
    ordinal: int = 0
    readers: list[str] = field(default_factory=lambda: [EVERYONE])

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "score": self.score,
            "source": self.source,
            "doc_key": self.doc_key,
            "location": self.location,
            "title": self.title,
            "page": self.page,
            "metadata": self.metadata,
            "source_modified_at": self.source_modified_at,
            "indexed_at": self.indexed_at,
        }


@dataclass
class SourceStats:
    documents: int = 0
    chunks: int = 0


@dataclass
class SyncReport:
    """What one sync did; its JSON form is the `freshrag sync --json` contract."""

    added: int = 0
    updated: int = 0
    deleted: int = 0
    renamed: int = 0
    unchanged: int = 0
    touched: int = 0
    failed: int = 0
    skipped: int = 0
    embedded: int = 0
    reused: int = 0
    written: int = 0
    chunks_deleted: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)
    skipped_items: list[dict[str, str]] = field(default_factory=list)
    # documents indexed with readers [] because their readers could not be determined
    closed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0  # of `seconds`, in the model (chunks/s of the embed stage)

    def error(self, source: str, key: str, reason: str) -> None:
        self.failed += 1
        self.errors.append({"source": source, "key": key, "error": reason})

    def skip(self, source: str, key: str, reason: str) -> None:
        self.skipped += 1
        self.skipped_items.append({"source": source, "key": key, "reason": reason})

    def close(self, source: str, key: str, reason: str) -> None:
        self.closed.append({"source": source, "key": key, "reason": reason})

    def merge(self, other: SyncReport) -> None:
        for name in ("added", "updated", "deleted", "renamed", "unchanged", "touched",
                     "failed", "skipped", "embedded", "reused", "written", "chunks_deleted"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)
        self.skipped_items.extend(other.skipped_items)
        self.closed.extend(other.closed)
        self.seconds += other.seconds
        self.embed_seconds += other.embed_seconds

    def summary(self) -> str:
        """One line: the documents' counts, the chunks', the seconds (the watcher's log)."""
        docs = ", ".join(f"{v} {k}" for k, v in self.to_json()["documents"].items() if v)
        return (f"{docs or 'no changes'}; chunks {self.embedded} embedded, {self.reused} "
                f"reused, {self.written} written, {self.chunks_deleted} deleted; "
                f"{self.seconds:.2f} s")

    def to_json(self) -> dict[str, Any]:
        return {
            "documents": {
                "added": self.added,
                "updated": self.updated,
                "deleted": self.deleted,
                "renamed": self.renamed,
                "unchanged": self.unchanged,
                "touched": self.touched,
                "failed": self.failed,
                "skipped": self.skipped,
            },
            "chunks": {
                "embedded": self.embedded,
                "reused": self.reused,
                "written": self.written,
                "deleted": self.chunks_deleted,
            },
            "errors": list(self.errors),
            "skipped": list(self.skipped_items),
            "readers_unknown": list(self.closed),
            "seconds": round(self.seconds, 3),
            "embed_seconds": round(self.embed_seconds, 3),
        }
