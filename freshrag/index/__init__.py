"""The Index Protocol and `open_index(url)`, which picks the backend by URL scheme."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from freshrag.model import Filters, Hit, Mode, Record, SourceStats


class IndexUnavailable(RuntimeError):
    """The index cannot be reached or failed a request; the message names the index. Transient:
    callers retry it with backoff."""


class IndexMisconfigured(RuntimeError):
    """The index refused a request in a way only a configuration change fixes (a bad collection
    name, a wrong API key, a limit above the server's): never retried; the message names the
    setting (`index.collection`, `index.api_key`, ...). Not an IndexUnavailable on purpose."""


class Index(Protocol):
    """What the engine and the API need of a retrieval index."""

    dim: int

    def upsert(self, records: Sequence[Record]) -> None:
        """Write records under their ids (idempotent: same id replaces)."""

    def delete(self, ids: Sequence[str]) -> None:
        """Delete objects by id; unknown ids are ignored."""

    def ids_for(self, source: str, doc_key: str) -> dict[str, str]:
        """The ids indexed for one document, mapped to their chunk hashes."""

    def delete_document(self, source: str, doc_key: str) -> int:
        """Delete every object of one document; returns how many were removed."""

    def update_metadata(self, ids: Sequence[str], metadata: dict[str, Any],
                        source_modified_at: float, readers: Sequence[str] | None = None
                        ) -> None:
        """Patch properties of existing objects without re-sending vectors (readers too, when
        given: a permission change)."""

    def vectors(self, ids: Sequence[str]) -> dict[str, list[float]]:
        """Stored vectors of the given ids (missing ids are absent)."""

    def search(self, text: str, vector: Sequence[float] | None, k: int,
               mode: Mode = Mode.hybrid, alpha: float = 0.5,
               filters: Filters | None = None) -> list[Hit]:
        """Top-k hits; `vector` is required for vector and hybrid modes."""

    def documents(self, source: str) -> dict[str, int]:
        """doc_key -> chunk count for one source (used by verify and status)."""

    def get_document(self, source: str, doc_key: str,
                     filters: Filters | None = None) -> list[Hit]:
        """The chunks of one document, in ordinal order; with `filters.principals`, only the
        chunks those principals may read (none: the caller answers 404)."""

    def stats(self) -> dict[str, SourceStats]:
        """Documents and chunks per source."""

    def optimize(self) -> None:
        """Housekeeping after a large sync (compaction, index refresh); may be a no-op."""

    def close(self) -> None:
        """Release connections and handles."""


def open_index(url: str, home: Path, dim: int | None = None, **options: Any) -> Index:
    """Open the index named by `url`; an empty url means the embedded index under `home`."""
    if not url or url.startswith("lancedb://") or url.startswith("file://"):
        from freshrag.index.lancedb import LanceIndex

        path = url.split("://", 1)[1] if url else str(home / "index")
        return LanceIndex(Path(path), dim=dim, ann=options.get("ann"))
    options.pop("ann", None)  # the embedded index's only
    if url.startswith(("weaviate://", "http://", "https://")):
        from freshrag.index.weaviate import WeaviateIndex

        return WeaviateIndex(url, dim=dim, **options)
    raise IndexMisconfigured(
        f"index.url {url!r}: unknown scheme (use weaviate://host:port, or leave it empty "
        "for the embedded index)"
    )
