"""ANN upkeep of the embedded index: when the vector index is built, retrained or dropped, and
how a query uses it (rows not yet in it are searched exactly, by LanceDB, in the same query)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VECTOR_INDEX = "vector_idx"
INDEX_TYPES = ("IVF_PQ", "IVF_HNSW_SQ")
# Rows per IVF partition. Measured on 100k vectors around real MiniLM embeddings (README: Scale):
# 1024 gives recall@10 0.975 at nprobes 40, where sqrt(rows) partitions (316) gave 0.961.
PARTITION_ROWS = 1024


@dataclass(frozen=True)
class AnnSettings:
    """`[index]` ann_* keys. Below `min_rows` every vector query is exact."""

    min_rows: int = 25_000
    index_type: str = "IVF_HNSW_SQ"
    nprobes: int = 30
    # Re-score this many times k candidates on the stored vectors (at least 1: the quantized
    # distances are far off, e.g. 0.42 for a true 0.71, and hybrid fusion needs the real ones;
    # 2 lifts recall@10 from 0.972 to 0.993 at nprobes 20 for little more CPU, README: Large
    # indexes).
    refine_factor: int = 2
    ef: int = 40  # IVF_HNSW_SQ: the graph search's candidate list (at least k × refine_factor)
    retrain_growth: float = 2.0  # retrain (new centroids) once rows outgrow training by this


def vector_index(table: Any) -> Any:
    return next((ix for ix in table.list_indices() if list(ix.columns) == ["vector"]), None)


def _trained_file(path: Path) -> Path:
    return path / "ann.json"


def _trained(path: Path) -> dict[str, Any]:
    """What the index was last trained on: {"rows": n, "type": ...} ({} if unknown)."""
    try:
        data = json.loads(_trained_file(path).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def build(table: Any, rows: int, s: AnnSettings, path: Path) -> None:
    """Train the vector index on the current rows (replacing any older one)."""
    from lancedb.index import IvfHnswSq, IvfPq

    partitions = max(1, rows // PARTITION_ROWS)
    config: Any
    if s.index_type == "IVF_PQ":
        dim = table.schema.field("vector").type.list_size
        config = IvfPq(distance_type="cosine", num_partitions=partitions,
                       num_sub_vectors=dim // 8 if dim % 8 == 0 else max(dim // 4, 1))
    else:
        config = IvfHnswSq(distance_type="cosine", num_partitions=partitions)
    table.create_index("vector", config=config, replace=True, name=VECTOR_INDEX)
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
    trained = _trained(path)
    if ix is None or trained.get("type") != s.index_type \
            or rows > s.retrain_growth * int(trained.get("rows") or 0):
        build(table, rows, s, path)
        return "built"
    return "kept"


def uses_ann(table: Any, s: AnnSettings) -> bool:
    """Whether vector queries go through the ANN index (built, and the table at min_rows)."""
    return vector_index(table) is not None and table.count_rows() >= s.min_rows


def tune(query: Any, s: AnnSettings, ann: bool, k: int) -> Any:
    """The vector query as `s` says: exact (bypassing any index) or ANN with its knobs. With
    ANN, LanceDB still searches rows not yet folded into the index exactly (fast_search off)."""
    if not ann:
        return query.bypass_vector_index()
    refine = max(1, s.refine_factor)
    query = query.nprobes(s.nprobes).refine_factor(refine)
    if "HNSW" in s.index_type:
        # The graph search gathers k × refine candidates to re-score; LanceDB refuses an ef
        # below that number.
        query = query.ef(max(s.ef, k * refine))
    return query
