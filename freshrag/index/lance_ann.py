"""ANN upkeep of the embedded index: when the vector index is built, retrained or dropped, and
how a query uses it (rows not yet in it are searched exactly, by LanceDB, in the same query)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VECTOR_INDEX = "vector_idx"
INDEX_TYPES = ("IVF_PQ", "IVF_HNSW_SQ")


@dataclass(frozen=True)
class AnnSettings:
    """`[index]` ann_* keys. Below `min_rows` every vector query is exact."""

    min_rows: int = 25_000
    index_type: str = "IVF_HNSW_SQ"
    nprobes: int = 20
    refine_factor: int = 10  # IVF_PQ: re-rank this many times k candidates on the real vectors
    ef: int = 100  # IVF_HNSW_SQ: the graph search's candidate list
    retrain_growth: float = 2.0  # retrain (new centroids) once rows outgrow training by this


def vector_index(table: Any) -> Any:
    return next((ix for ix in table.list_indices() if list(ix.columns) == ["vector"]), None)


def _trained_file(path: Path) -> Path:
    return path / "ann.json"


def _trained_rows(path: Path) -> int:
    try:
        return int(json.loads(_trained_file(path).read_text())["rows"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def build(table: Any, rows: int, s: AnnSettings, path: Path) -> None:
    """Train the vector index on the current rows (replacing any older one)."""
    partitions = max(1, min(int(rows ** 0.5), rows // 256))
    options: dict[str, Any] = {"metric": "cosine", "vector_column_name": "vector",
                               "index_type": s.index_type, "num_partitions": partitions,
                               "replace": True, "name": VECTOR_INDEX}
    if s.index_type == "IVF_PQ":
        dim = table.schema.field("vector").type.list_size
        options["num_sub_vectors"] = dim // 8 if dim % 8 == 0 else dim // 4 or 1
    table.create_index(**options)
    _trained_file(path).write_text(json.dumps({"rows": rows, "type": s.index_type}))


def maintain(table: Any, s: AnnSettings, path: Path) -> str:
    """After LanceDB's optimize() folded new rows into the index: build it when the table
    reached min_rows, retrain when it outgrew its training, drop it below min_rows."""
    rows = table.count_rows()
    ix = vector_index(table)
    if rows < s.min_rows:
        if ix is not None:
            table.drop_index(ix.name)
            _trained_file(path).unlink(missing_ok=True)
            return "dropped"
        return "exact"
    trained = _trained_rows(path)
    if ix is None or trained <= 0 or rows > s.retrain_growth * trained \
            or json.loads(_trained_file(path).read_text()).get("type") != s.index_type:
        build(table, rows, s, path)
        return "built"
    return "kept"


def uses_ann(table: Any, s: AnnSettings) -> bool:
    """Whether vector queries go through the ANN index (built, and the table at min_rows)."""
    return vector_index(table) is not None and table.count_rows() >= s.min_rows


def tune(query: Any, s: AnnSettings, ann: bool) -> Any:
    """The vector query as `s` says: exact (bypassing any index) or ANN with its knobs. With
    ANN, LanceDB still searches rows not yet folded into the index exactly (fast_search off)."""
    if not ann:
        return query.bypass_vector_index()
    query = query.nprobes(s.nprobes)
    if s.index_type == "IVF_PQ" and s.refine_factor:
        query = query.refine_factor(s.refine_factor)
    if "HNSW" in s.index_type:
        query = query.ef(s.ef)
    return query
