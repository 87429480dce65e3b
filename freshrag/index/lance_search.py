"""The embedded index's read path. One search's LanceDB queries go together, in one round trip,
to LanceDB's own event loop (its async API: the sync one hands each call to that loop and back
and rebuilds the query on the way); candidates are read as ids and scores, the full rows of
the returned hits only (by id); each query word's best BM25 alone (the hybrid keyword
ceiling, freshrag/index/fusion.py) is kept per table version."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from freshrag.index.fusion import (
    KEYWORD_DEPTH,
    MOST_TERMS,
    Scored,
    ceiling_terms,
    fuse_union_ids,
    keyword_ceiling,
)
from freshrag.index.lance_ann import AnnSettings, tune
from freshrag.model import Hit

COLUMNS = ["id", "text", "source", "doc_key", "chunk_hash", "ordinal", "title", "location",
           "page", "source_modified_at", "indexed_at", "metadata", "readers"]
# Words' best scores kept at most (all filters together); past it the cache starts over.
MOST_KEPT = 20_000


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def where_ids(ids: Sequence[str]) -> str:
    return "id IN (" + ",".join(sql_str(i) for i in ids) + ")"


def to_hit(row: Mapping[str, Any], score: float) -> Hit:
    return Hit(
        text=row["text"], score=float(score), source=row["source"], doc_key=row["doc_key"],
        location=row["location"], title=row["title"], page=row["page"],
        metadata=json.loads(row["metadata"] or "{}"),
        source_modified_at=row["source_modified_at"], indexed_at=row["indexed_at"],
        id=row["id"], chunk_hash=row["chunk_hash"], ordinal=row["ordinal"],
        readers=list(row.get("readers") or []),
    )


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run `coroutine` on LanceDB's background event loop (where its sync API runs too)."""
    from lancedb.background_loop import LOOP

    return LOOP.run(coroutine)


def async_table(table: Any) -> Any:
    """The AsyncTable under LanceDB's sync table: the same handle (checkout_latest() on the
    sync table moves it), so reads through it see exactly what the sync table sees."""
    return table._table


class TermBest:
    """Each query word's best BM25 alone, per (table version, filter). BM25's statistics are
    the whole table's, so any write changes them; every write makes a new table version, and
    a new version starts an empty cache — whoever wrote it (this process, or another one: the
    API server's refresh() moves its handle to the latest version before each search)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: int | None = None
        self._best: dict[tuple[str, str], float] = {}
        self.asked = 0  # words looked up in the index (the tests count them)

    def known(self, version: int, where: str, terms: Sequence[str]) -> dict[str, float]:
        with self._lock:
            if version != self._version:
                self._version, self._best = version, {}
            return {t: self._best[where, t] for t in terms if (where, t) in self._best}

    def keep(self, version: int, where: str, best: Mapping[str, float]) -> None:
        with self._lock:
            if version != self._version:
                return  # measured on a version that is no longer current
            if len(self._best) + len(best) > MOST_KEPT:
                self._best = {}
            self._best.update({(where, t): v for t, v in best.items()})
            self.asked += len(best)


def vector_query(table: Any, vector: Sequence[float], k: int, where: str | None,
                 ann: AnnSettings, use_ann: bool, columns: list[str]) -> Any:
    query = async_table(table).query().nearest_to(list(vector)).column("vector")
    query = tune(query.distance_type("cosine"), ann, use_ann, k)
    if where:
        query = query.where(where)  # a prefilter: k readable hits whenever k match
    return query.select(columns).limit(k)


def text_query(table: Any, text: str, k: int, where: str | None, columns: list[str]) -> Any:
    query = async_table(table).query().nearest_to_text(text)
    if where:
        query = query.where(where)
    return query.select(columns).limit(k)


async def _text(query: Any) -> Any:
    """A full-text query's result, or None when the table has no full-text index yet (another
    process created it and has not built one: nothing is keyword-searchable until it has)."""
    try:
        return await query.to_arrow()
    except ValueError as exc:
        if "INVERTED index" in str(exc):
            return None
        raise


def one_side(table: Any, text: str, vector: Sequence[float] | None, k: int,
             where: str | None, ann: AnnSettings, use_ann: bool) -> list[Hit]:
    """Vector (`vector` given) or keyword search: top-k hits with their rows, one query."""
    if vector is not None:
        result = run(vector_query(table, vector, k, where, ann, use_ann,
                                  [*COLUMNS, "_distance"]).to_arrow())
        # Cosine distance d in [0, 2]: similarity 1 - d, so higher is better everywhere.
        return [to_hit(r, 1.0 - r["_distance"]) for r in result.to_pylist()]
    result = run(_text(text_query(table, text, k, where, [*COLUMNS, "_score"])))
    return [] if result is None else [to_hit(r, r["_score"]) for r in result.to_pylist()]


def _scored(result: Any, column: str, distance: bool) -> list[Scored]:
    if result is None:
        return []
    scores = result.column(column).to_pylist()
    return list(zip(result.column("id").to_pylist(),
                    [1.0 - s if distance else s for s in scores], strict=True))


def hybrid(table: Any, text: str, vector: Sequence[float], pool: int, keep: int,
           alpha: float, where: str | None, ann: AnnSettings, use_ann: bool,
           best: TermBest) -> list[Hit]:
    """The first `keep` of the fused top `pool` (freshrag/index/fusion.py): the vector side's
    top `pool`, the
    keyword side's top KEYWORD_DEPTH * pool with the stored vectors of its candidates, and
    the words of the ceiling not yet known for this version, all in one round trip; then the
    rows of the winners, by id (filtered again: a row changed since is read as it is now)."""
    table_ = async_table(table)
    keyword = bool(text.strip())
    terms = ceiling_terms(text, MOST_TERMS) if keyword else []
    key = where or ""

    async def candidates() -> tuple[int, dict[str, float], list[Any]]:
        version = await table_.version()
        known = best.known(version, key, terms)
        queries = [vector_query(table, vector, pool, where, ann, use_ann,
                                ["id", "_distance"]).to_arrow()]
        if keyword:
            queries.append(_text(text_query(table, text, KEYWORD_DEPTH * pool, where,
                                            ["id", "_score", "vector"])))
            queries += [_text(text_query(table, t, 1, where, ["_score"]))
                        for t in terms if t not in known]
        return version, known, list(await asyncio.gather(*queries))

    version, known, (by_vector, *rest) = run(candidates())
    deep, stored = None, {}
    if keyword:
        deep, *alone = rest
        missing = [t for t in terms if t not in known]
        found = {t: float(r.column("_score")[0].as_py()) if r is not None and r.num_rows
                 else 0.0 for t, r in zip(missing, alone, strict=True)}
        best.keep(version, key, found)
        known = {**known, **found}
        if deep is not None and deep.num_rows:
            import numpy as np

            vectors = deep.column("vector").combine_chunks()
            matrix = np.asarray(vectors.flatten(), dtype=np.float32).reshape(
                len(vectors), vectors.type.list_size)
            stored = dict(zip(deep.column("id").to_pylist(), matrix, strict=True))
    deep_list = _scored(deep, "_score", distance=False)
    ceiling = keyword_ceiling(text, lambda t: known.get(t, 0.0), MOST_TERMS,
                              deep_list[0][1] if deep_list else None) if keyword else 0.0
    ranked = fuse_union_ids(_scored(by_vector, "_distance", distance=True), deep_list, pool,
                            vector, lambda ids: {i: stored[i] for i in ids if i in stored},
                            alpha, ceiling)
    return rows_of(table, ranked[:keep], where)


def rows_of(table: Any, ranked: Sequence[Scored], where: str | None) -> list[Hit]:
    """Hits for (id, score) pairs, in their order, read by id with `where`; ids gone are
    skipped."""
    if not ranked:
        return []
    condition = where_ids([i for i, _ in ranked]) + (f" AND ({where})" if where else "")
    result = run(async_table(table).query().where(condition).select(COLUMNS)
                 .limit(len(ranked)).to_arrow())
    rows = {r["id"]: r for r in result.to_pylist()}
    return [to_hit(rows[i], score) for i, score in ranked if i in rows]
