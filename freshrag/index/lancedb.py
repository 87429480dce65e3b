"""The embedded index: LanceDB on disk, vector + native full-text search, fused for hybrid."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from freshrag.index import IndexUnavailable, lance_search
from freshrag.index.fusion import pool_size
from freshrag.index.lance_ann import AnnSettings, maintain, uses_ann
from freshrag.index.lance_search import COLUMNS as _COLUMNS
from freshrag.index.lance_search import sql_str, to_hit, where_ids
from freshrag.model import EVERYONE, Filters, Hit, Mode, Record, SourceStats

__all__ = ["LanceIndex", "principals_sql", "readers_sql", "sql_str"]


def readers_sql(readers: Sequence[str]) -> str:
    """A list<string> literal for LanceDB's SQL (an empty one needs its type spelled out)."""
    if not readers:
        return "arrow_cast(make_array(), 'List(Utf8)')"
    return "make_array(" + ",".join(sql_str(r) for r in readers) + ")"


def principals_sql(principals: frozenset[str]) -> str:
    """Chunks one of `principals` (or everyone) may read: evaluated inside the query."""
    return f"array_has_any(readers, {readers_sql(sorted(principals | {EVERYONE}))})"


def canonical_metadata(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), default=str)


def _io_failure(exc: Exception) -> bool:
    """An OS-level failure under LanceDB (it wraps them in RuntimeError): disk full, a path
    made unwritable or replaced. Other errors (a schema mismatch) are bugs, not outages."""
    text = str(exc)
    return isinstance(exc, OSError) or "LanceError(IO)" in text or "os error" in text


class LanceIndex:
    """One LanceDB table under `path`, created at the first write (fixing its vector size)."""

    def __init__(self, path: Path, dim: int | None = None, table: str = "chunks",
                 ann: AnnSettings | None = None):
        import lancedb

        self.path = path
        self.ann = ann or AnnSettings()
        self._use_ann = False  # the vector index is built and the table at ann.min_rows
        self.ann_state = "exact"  # what the last optimize() did to the vector index
        self.dim = dim or 0
        self.table_name = table
        self._lock = threading.Lock()
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._db = lancedb.connect(str(path))
        except OSError as exc:
            raise IndexUnavailable(f"embedded index at {path}: {exc}") from exc
        self._table: Any = None
        self._fts_ready = False
        self._term_best = lance_search.TermBest()  # hybrid's keyword ceiling, per version
        self._refreshed_from = float("-inf")  # when the last refresh() began
        self._open_if_created()

    def _open_if_created(self) -> None:
        if self.table_name not in self._db.table_names():
            return
        try:
            self._open()
        except ValueError as exc:
            # A process killed inside create_table leaves the table's folder without a first
            # version: listed, yet not a table. The next write's create_table completes it.
            if "was not found" not in str(exc):
                raise
            self._table = None

    def _open(self) -> None:
        self._table = self._db.open_table(self.table_name)
        self.dim = self._table.schema.field("vector").type.list_size
        self._add_readers()
        self._use_ann = uses_ann(self._table, self.ann)

    def _add_readers(self) -> None:
        if "readers" not in self._table.schema.names:
            # An index written before readers were captured: everyone could read its chunks
            # then, and still can until a sync re-writes them (a metadata write, no re-embed).
            try:
                self._table.add_columns({"readers": readers_sql([EVERYONE])})
            except (ValueError, RuntimeError) as exc:
                if "readers" not in str(exc):  # another process added it first
                    raise
                self._table.checkout_latest()

    # writing ---------------------------------------------------------------------------------
    def _schema(self, dim: int) -> Any:
        import pyarrow as pa

        return pa.schema([
            pa.field("id", pa.string()), pa.field("vector", pa.list_(pa.float32(), dim)),
            pa.field("text", pa.string()), pa.field("source", pa.string()),
            pa.field("doc_key", pa.string()), pa.field("chunk_hash", pa.string()),
            pa.field("ordinal", pa.int32()), pa.field("title", pa.string()),
            pa.field("location", pa.string()), pa.field("page", pa.int32()),
            pa.field("source_modified_at", pa.float64()), pa.field("indexed_at", pa.float64()),
            pa.field("metadata", pa.string()), pa.field("readers", pa.list_(pa.string())),
        ])

    def _ensure_table(self, dim: int) -> Any:
        if self._table is None:
            self._table = self._db.create_table(self.table_name, schema=self._schema(dim),
                                                exist_ok=True)  # or another process's
            self.dim = self._table.schema.field("vector").type.list_size
            self._add_readers()
        if not self._fts_ready:  # a crash between creating the table and its index leaves none
            indexes = self._table.list_indices()
            if not any(ix.index_type == "FTS" for ix in indexes):
                self._table.create_fts_index("text", use_tantivy=False, replace=True)
            if not any(list(ix.columns) == ["id"] for ix in indexes):
                # Hybrid search reads its winners' rows by id (and upserts and deletes match
                # by id): a B-tree finds them without a scan. Older tables get it here too.
                from lancedb.index import BTree

                self._table.create_index("id", config=BTree(), replace=True)
            self._fts_ready = True
        if dim != self.dim:
            raise IndexUnavailable(
                f"embedded index at {self.path}: vectors have {dim} dimensions but the index "
                f"holds {self.dim}; a different model needs a new home (or delete {self.path})")
        return self._table

    def upsert(self, records: Sequence[Record]) -> None:
        if not records:
            return
        rows = [{
            "id": r.id, "vector": r.vector, "text": r.text, "source": r.source,
            "doc_key": r.doc_key, "chunk_hash": r.chunk_hash, "ordinal": r.ordinal,
            "title": r.title, "location": r.location, "page": r.page,
            "source_modified_at": r.source_modified_at, "indexed_at": r.indexed_at,
            "metadata": canonical_metadata(r.metadata), "readers": list(r.readers),
        } for r in records]
        with self._lock:
            table = self._ensure_table(len(records[0].vector))
            self._io(lambda: table.merge_insert("id").when_matched_update_all()
                        .when_not_matched_insert_all().execute(rows))

    def _io(self, fn: Any, what: str = "write") -> Any:
        """Run a LanceDB call; a failure of the disk under it is IndexUnavailable."""
        try:
            return fn()
        except (OSError, RuntimeError) as exc:
            if not _io_failure(exc):
                raise
            raise IndexUnavailable(
                f"embedded index at {self.path}: {what} failed: {exc}") from exc

    def _where_ids(self, ids: Sequence[str]) -> str:
        return where_ids(ids)

    def delete(self, ids: Sequence[str]) -> None:
        if not ids or self._table is None:
            return
        with self._lock:
            for i in range(0, len(ids), 500):
                where = self._where_ids(ids[i:i + 500])
                self._io(lambda where=where: self._table.delete(where))

    def delete_document(self, source: str, doc_key: str) -> int:
        ids = list(self.ids_for(source, doc_key))
        self.delete(ids)
        return len(ids)

    def update_metadata(self, ids: Sequence[str], metadata: dict[str, Any],
                        source_modified_at: float, readers: Sequence[str] | None = None
                        ) -> None:
        if not ids or self._table is None:
            return
        values = {"metadata": sql_str(canonical_metadata(metadata)),
                  "source_modified_at": repr(float(source_modified_at))}
        if readers is not None:
            values["readers"] = readers_sql(readers)
        with self._lock:
            for i in range(0, len(ids), 500):
                where = self._where_ids(ids[i:i + 500])
                self._io(lambda where=where: self._table.update(where=where, values_sql=values))

    # reading ----------------------------------------------------------------------------------
    def _rows(self, where: str, columns: list[str],
              limit: int | None = None) -> list[dict[str, Any]]:
        if self._table is None:
            return []
        query = self._table.search().where(where).select(columns)
        query = query.limit(limit if limit is not None else max(self._table.count_rows(), 1))
        result: list[dict[str, Any]] = self._io(query.to_list, "read")
        return result

    def ids_for(self, source: str, doc_key: str) -> dict[str, str]:
        where = f"source = {sql_str(source)} AND doc_key = {sql_str(doc_key)}"
        return {r["id"]: r["chunk_hash"] for r in self._rows(where, ["id", "chunk_hash"])}

    def vectors(self, ids: Sequence[str]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for i in range(0, len(ids), 500):
            for r in self._rows(self._where_ids(ids[i:i + 500]), ["id", "vector"]):
                out[r["id"]] = [float(x) for x in r["vector"]]
        return out

    def get_document(self, source: str, doc_key: str,
                     filters: Filters | None = None) -> list[Hit]:
        where = f"source = {sql_str(source)} AND doc_key = {sql_str(doc_key)}"
        if filters is not None and filters.principals is not None:
            where += f" AND {principals_sql(filters.principals)}"
        hits = [to_hit(r, 0.0) for r in self._rows(where, _COLUMNS)]
        return sorted(hits, key=lambda h: h.ordinal)

    def documents(self, source: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self._rows(f"source = {sql_str(source)}", ["doc_key"]):
            counts[r["doc_key"]] = counts.get(r["doc_key"], 0) + 1
        return counts

    def stats(self) -> dict[str, SourceStats]:
        out: dict[str, SourceStats] = {}
        if self._table is None:
            return out
        table = (self._table.search().select(["source", "doc_key"])
                 .limit(max(self._table.count_rows(), 1)).to_arrow())
        pairs = zip(table.column("source").to_pylist(), table.column("doc_key").to_pylist(),
                    strict=True)
        docs: dict[str, set[str]] = {}
        for source, key in pairs:
            stats = out.setdefault(source, SourceStats())
            stats.chunks += 1
            docs.setdefault(source, set()).add(key)
        for source, keys in docs.items():
            out[source].documents = len(keys)
        return out

    def _filter_sql(self, filters: Filters | None) -> str | None:
        if filters is None:
            return None
        parts = []
        if filters.source:
            parts.append(f"source = {sql_str(filters.source)}")
        if filters.doc_key_prefix:
            parts.append(f"starts_with(doc_key, {sql_str(filters.doc_key_prefix)})")
        for key, value in sorted(filters.metadata.items()):
            # Narrow by the canonical JSON text; _matches() checks exactly afterwards.
            needle = canonical_metadata({key: value})[1:-1]
            escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            parts.append(f"metadata LIKE {sql_str('%' + escaped + '%')} ESCAPE '\\'")
        if filters.principals is not None:
            parts.append(principals_sql(filters.principals))
        return " AND ".join(parts) or None

    @staticmethod
    def _matches(hit: Hit, filters: Filters | None) -> bool:
        if filters is None:
            return True
        return all(hit.metadata.get(k) == v for k, v in filters.metadata.items())

    def _search(self, mode: Mode, text: str, vector: Sequence[float] | None, k: int,
                where: str | None) -> list[Hit]:
        """Top-k of one side, with their rows (freshrag/index/lance_search.py)."""
        return self._io(lambda: lance_search.one_side(
            self._table, text, None if mode is Mode.keyword else list(vector or []), k, where,
            self.ann, self._use_ann), "read")

    def search(self, text: str, vector: Sequence[float] | None, k: int,
               mode: Mode = Mode.hybrid, alpha: float = 0.5,
               filters: Filters | None = None) -> list[Hit]:
        if self._table is None or k <= 0:
            return []
        if mode is not Mode.keyword and vector is None:
            raise ValueError(f"{mode.value} search needs a query vector")
        where = self._filter_sql(filters)
        fetch = k * 4 if filters and filters.metadata else k
        if mode is Mode.hybrid:
            # With metadata filters, every fused candidate is re-checked (_matches) before k.
            pool = pool_size(fetch)
            keep = pool if filters and filters.metadata else fetch
            hits = self._io(lambda: lance_search.hybrid(
                self._table, text, list(vector or []), pool, keep, alpha, where, self.ann,
                self._use_ann, self._term_best), "read")
        else:
            if mode is Mode.keyword and not text.strip():
                return []
            hits = self._search(mode, text, vector, fetch, where)
        return [h for h in hits if self._matches(h, filters)][:k]

    def refresh(self) -> None:
        """See writes made by other processes since this handle opened (the API server calls
        it before searching: a table handle otherwise keeps the version it opened). Concurrent
        callers share one look: a refresh that began after this call did has seen every write
        committed before it."""
        called = time.monotonic()
        with self._lock:
            if self._refreshed_from > called:
                return
            self._refreshed_from = time.monotonic()
            if self._table is None:
                self._open_if_created()
            else:
                version = self._table.version
                self._table.checkout_latest()
                if self._table.version == version:
                    return
            if self._table is not None:
                self._use_ann = uses_ann(self._table, self.ann)

    def optimize(self) -> None:
        """Compact small fragments, fold new rows into the full-text and vector indexes, then
        build, retrain or drop the vector index (freshrag/index/lance_ann.py); `ann_state`
        says which: exact, built, kept, dropped."""
        if self._table is None:
            return
        with self._lock:
            self._io(self._table.optimize)
            self.ann_state = self._io(lambda: maintain(self._table, self.ann, self.path))
            self._use_ann = uses_ann(self._table, self.ann)

    def close(self) -> None:
        self._table = None
