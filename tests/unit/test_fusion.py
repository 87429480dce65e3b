"""Hybrid fusion: the union of both sides, each candidate with both real scores."""

from __future__ import annotations

import pytest

from freshrag.index.fusion import cosine, fuse, fuse_scored, fuse_union
from freshrag.model import Hit


def hit(i: str, score: float = 0.0) -> Hit:
    return Hit(text=i, score=score, source="s", doc_key=i, location=i, title="", page=None,
               metadata={}, source_modified_at=0.0, indexed_at=0.0, id=i)


def test_an_exact_keyword_match_beats_weak_vector_differences() -> None:
    # 30 near-identical notes: vector similarities bunch together, one note holds the rare
    # query term. Its vector is the weakest; dividing by the best keeps that a small gap.
    ids = [f"n{i:02d}" for i in range(30)]
    vector = {i: 0.75 - 0.007 * n for n, i in enumerate(ids)}
    vector["n05"] = 0.55
    keyword = {i: 0.03 for i in ids}
    keyword["n05"] = 3.1
    top = fuse_scored({i: hit(i) for i in ids}, vector, keyword, 0.5, 5)
    assert top[0].id == "n05"


def test_each_side_alone_ranks_as_that_side() -> None:
    ids = ["a", "b", "c"]
    vector, keyword = {"a": 0.9, "b": 0.5, "c": 0.7}, {"a": 0.0, "b": 5.0, "c": 1.0}
    assert [h.id for h in fuse_scored({i: hit(i) for i in ids}, vector, keyword, 1.0, 3)] == \
        ["a", "c", "b"]
    assert [h.id for h in fuse_scored({i: hit(i) for i in ids}, vector, keyword, 0.0, 3)] == \
        ["b", "c", "a"]


def test_a_candidate_strong_on_both_sides_wins() -> None:
    ids = ["both", "vec", "kw"]
    vector = {"both": 0.8, "vec": 0.85, "kw": 0.3}
    keyword = {"both": 4.0, "kw": 4.5}  # "vec" matches no query term
    top = fuse_scored({i: hit(i) for i in ids}, vector, keyword, 0.5, 3)
    assert [h.id for h in top][0] == "both"
    assert 0.0 <= min(h.score for h in top) <= max(h.score for h in top) <= 1.0


def test_ranked_lists_fuse_with_a_missing_score_as_the_weakest() -> None:
    top = fuse([hit("a", 0.9), hit("b", 0.6)], [hit("c", 2.0), hit("a", 1.0)], 0.5, 3)
    assert [h.id for h in top] == ["c", "a", "b"]  # c: 2/3 + 1, a: 1 + 1/2, b: 2/3 + 0
    assert cosine([1.0, 0.0], [0.0, 2.0]) == 0.0 and cosine([1.0, 1.0], [2.0, 2.0]) > 0.999


def test_the_union_scores_keyword_only_candidates_by_their_stored_vectors() -> None:
    by_vector = [hit("v1", 0.9), hit("v2", 0.8)]
    deep = [hit("k1", 5.0), hit("v2", 4.0)]
    asked: list[list[str]] = []

    def vectors_of(ids: list[str]) -> dict[str, list[float]]:
        asked.append(ids)
        return {"k1": [1.0, 0.0]}

    top = fuse_union(by_vector, deep, 40, [1.0, 0.0], vectors_of, 0.5)
    assert asked == [["k1"]]
    # k1: similarity 1.0 (its stored vector is the query's) and the best BM25: first.
    assert [h.id for h in top] == ["k1", "v2", "v1"]


def test_a_deep_list_cut_short_by_the_server_still_gives_its_floor() -> None:
    # Weaviate caps the deep keyword list at QUERY_MAXIMUM_RESULTS: a capped list is full
    # though shorter than KEYWORD_DEPTH * pool, so a vector candidate missing from it is
    # given its weakest score, not 0.
    def fused(deep_full: bool | None) -> dict[str, float]:
        deep = [hit("k1", 5.0), hit("k2", 2.0)]
        top = fuse_union([hit("v1", 0.9)], deep, 3, [1.0, 0.0], lambda ids: {}, 0.0,
                         deep_full=deep_full)
        return {h.id: h.score for h in top}

    assert fused(None)["v1"] == 0.0  # 2 hits < KEYWORD_DEPTH * 3: the list holds every match
    assert fused(True)["v1"] == pytest.approx(0.4)  # at most the weakest: 2.0 / 5.0
