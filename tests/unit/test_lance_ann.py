"""The embedded index's ANN threshold: exact below it, a vector index at it, and rows written
or deleted after the index was trained visible (or gone) at once, folded in by optimize()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from freshrag.index.lance_ann import AnnSettings, vector_index
from freshrag.index.lancedb import LanceIndex
from freshrag.model import Mode, Record

DIM = 32
ANN = AnnSettings(min_rows=300)


def records(vectors: np.ndarray, start: int = 0, tag: str = "") -> list[Record]:
    return [Record(id=f"r{start + n:05d}", vector=v.tolist(), text=f"row {start + n} {tag}".strip(),
                   source="s", doc_key=f"d{(start + n) // 10}", chunk_hash=f"h{start + n}{tag}",
                   ordinal=n % 10, title="", location="", page=None, source_modified_at=0.0,
                   indexed_at=0.0) for n, v in enumerate(vectors)]


def unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype("float32")
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def top(index: LanceIndex, vector: np.ndarray, k: int = 5) -> list[str]:
    return [h.id for h in index.search("", vector.tolist(), k, Mode.vector)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[LanceIndex, np.ndarray]:
    index = LanceIndex(tmp_path_factory.mktemp("ann") / "index", ann=ANN)
    vectors = unit(400, 1)
    index.upsert(records(vectors))
    index.optimize()
    assert index.ann_state == "built"
    return index, vectors


def test_below_the_threshold_search_is_exact_and_no_index_is_built(tmp_path: Path) -> None:
    index = LanceIndex(tmp_path / "index", ann=ANN)
    vectors = unit(200, 2)
    index.upsert(records(vectors))
    index.optimize()
    assert index.ann_state == "exact"
    assert vector_index(index._table) is None and not index._use_ann
    exact = np.argsort(-(vectors @ vectors[7]))[:5]
    assert top(index, vectors[7]) == [f"r{i:05d}" for i in exact]


def test_at_the_threshold_a_vector_index_serves_the_queries(
        built: tuple[LanceIndex, np.ndarray]) -> None:
    index, vectors = built
    assert vector_index(index._table) is not None and index._use_ann
    assert top(index, vectors[42], 1) == ["r00042"]
    # scores are the real cosine similarities, not the quantized ones (hybrid fusion uses them)
    query = vectors[42] * 0.6 + vectors[7] * 0.4
    query /= np.linalg.norm(query)
    for hit in index.search("", query.tolist(), 10, Mode.vector):
        assert hit.score == pytest.approx(float(vectors[int(hit.id[1:])] @ query), abs=1e-4)
    # k above the graph search's ef (100): the whole index, as exact search would
    assert len(index.search("", query.tolist(), 150, Mode.vector)) == 150
    # a second handle (the API server's) sees it too
    reader = LanceIndex(index.path, ann=ANN)
    assert reader._use_ann and top(reader, vectors[42], 1) == ["r00042"]


def test_rows_added_after_training_are_found_at_once_then_folded_in(
        built: tuple[LanceIndex, np.ndarray]) -> None:
    index, _ = built
    new = unit(20, 3)
    index.upsert(records(new, start=1000))
    assert top(index, new[4], 1) == ["r01004"]  # unindexed: searched exactly by LanceDB
    stats = index._table.index_stats(vector_index(index._table).name)
    assert stats.num_unindexed_rows == 20
    index.optimize()
    assert index.ann_state == "kept"
    stats = index._table.index_stats(vector_index(index._table).name)
    assert stats.num_unindexed_rows == 0
    assert top(index, new[4], 1) == ["r01004"]


def test_deleted_and_replaced_rows_leave_no_ghosts(built: tuple[LanceIndex, np.ndarray]) -> None:
    index, vectors = built
    index.delete(["r00010"])
    moved = unit(1, 4)[0]
    index.upsert(records(moved[None, :], start=11, tag="moved"))  # r00011 gets a new vector
    for _ in range(2):  # before and after optimize() folds the change into the index
        assert "r00010" not in top(index, vectors[10], 50)
        hits = index.search("", vectors[11].tolist(), 50, Mode.vector)
        assert all(h.id != "r00011" or h.text == "row 11 moved" for h in hits)
        assert len({h.id for h in hits}) == len(hits)
        assert top(index, moved, 1) == ["r00011"]
        index.optimize()


def test_shrinking_below_the_threshold_drops_the_index(tmp_path: Path) -> None:
    index = LanceIndex(tmp_path / "index", ann=ANN)
    vectors = unit(320, 5)
    index.upsert(records(vectors))
    index.optimize()
    assert index.ann_state == "built"
    index.delete([f"r{i:05d}" for i in range(100)])
    index.optimize()
    assert index.ann_state == "dropped"
    assert not index._use_ann and vector_index(index._table) is None
    assert top(index, vectors[150], 1) == ["r00150"]
