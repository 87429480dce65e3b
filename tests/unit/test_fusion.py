"""Hybrid fusion: the union of both sides, each candidate with both real scores, each side on
its theoretical range (cosine as is, BM25 over the query's ceiling)."""

from __future__ import annotations

import pytest

from freshrag.index.fusion import (
    cosine,
    fuse,
    fuse_scored,
    fuse_union,
    keyword_ceiling,
    query_terms,
)
from freshrag.model import Hit


def hit(i: str, score: float = 0.0) -> Hit:
    return Hit(text=i, score=score, source="s", doc_key=i, location=i, title="", page=None,
               metadata={}, source_modified_at=0.0, indexed_at=0.0, id=i)


def ranked(vector: dict[str, float], keyword: dict[str, float], alpha: float,
           ceiling: float) -> list[str]:
    ids = sorted(vector.keys() | keyword.keys())
    return [h.id for h in fuse_scored({i: hit(i) for i in ids}, vector, keyword, alpha,
                                      len(ids), ceiling)]


def test_a_rare_exact_term_decides_over_near_equal_similarities() -> None:
    # 30 near-identical notes: similarities bunch together, one note holds the rare query
    # term, and its vector is the weakest. Its BM25 fills most of the query's ceiling.
    ids = [f"n{i:02d}" for i in range(30)]
    vector = {i: 0.75 - 0.004 * n for n, i in enumerate(ids)}
    vector["n05"] = 0.55
    keyword = {i: 0.03 for i in ids}
    keyword["n05"] = 1.47
    for alpha in (0.5, 0.7, 0.8):
        assert ranked(vector, keyword, alpha, ceiling=1.50)[0] == "n05", alpha


def test_common_words_matched_leave_the_ranking_to_the_vectors() -> None:
    # A question of common words: its best keyword match covers a small part of what a text
    # matching every word could score, so a much closer vector wins; stretching BM25 to
    # [0, 1] over the candidates (dividing by the best) would let the keyword match win.
    vector = {"close": 0.72, "wordy": 0.41}
    keyword = {"close": 1.0, "wordy": 3.0}
    assert ranked(vector, keyword, 0.6, ceiling=12.0)[0] == "close"
    assert ranked(vector, keyword, 0.6, ceiling=3.0)[0] == "wordy"  # the same, fully matched


def test_each_side_alone_ranks_as_that_side() -> None:
    vector, keyword = {"a": 0.9, "b": 0.5, "c": 0.7}, {"a": 0.0, "b": 5.0, "c": 1.0}
    assert ranked(vector, keyword, 1.0, 6.0) == ["a", "c", "b"]
    assert ranked(vector, keyword, 0.0, 6.0) == ["b", "c", "a"]


def test_scores_stay_in_zero_one_and_no_ceiling_means_no_keyword_side() -> None:
    ids = ["x", "y"]
    top = fuse_scored({i: hit(i) for i in ids}, {"x": -0.2, "y": 0.9}, {"x": 9.0}, 0.5, 2,
                      ceiling=3.0)  # a score above the ceiling (an estimate) counts 1
    assert {h.id: h.score for h in top} == {"x": pytest.approx(0.5), "y": pytest.approx(0.45)}
    top = fuse_scored({i: hit(i) for i in ids}, {"x": 0.2, "y": 0.1}, {"y": 4.0}, 0.5, 2, 0.0)
    assert [h.id for h in top] == ["x", "y"]


def test_the_keyword_ceiling_adds_each_words_best_alone() -> None:
    asked: list[str] = []
    best = {"codeword": 0.02, "zorblax5quint": 1.45, "vault": 0.02}

    def best_for(term: str) -> float:
        asked.append(term)
        return best.get(term, 0.0)

    assert keyword_ceiling("Codeword zorblax5quint, vault?", best_for, 32) == \
        pytest.approx(1.49)
    assert asked == ["codeword", "zorblax5quint", "vault"]
    assert query_terms("the pool, the POOL") == {"the": 2, "pool": 2}
    # A repeated word counts each time (Weaviate boosts repeated query terms).
    assert keyword_ceiling("vault vault codeword", best_for, 32) == pytest.approx(0.06)
    # One word: the deep list's best is its best alone, no query asked.
    asked.clear()
    assert keyword_ceiling("zorblax5quint", best_for, 32, 1.46) == 1.46
    assert keyword_ceiling("zorblax5quint", best_for, 32, None) == 0.0  # it matched nothing
    assert asked == []
    # Past the limit of words asked, the rest count as the mean of those asked.
    assert keyword_ceiling("zorblax5quint vault codeword", best_for, 2) == \
        pytest.approx(1.45 + 0.02 + (1.45 + 0.02) / 2)


def test_ranked_lists_fuse_with_a_missing_score_as_the_weakest() -> None:
    top = fuse([hit("a", 0.9), hit("b", 0.6)], [hit("c", 2.0), hit("a", 1.0)], 0.5, 3)
    # ceiling = the best keyword score, 2.0; c: vector 0.6 (the weakest), keyword 1.0
    assert [h.id for h in top] == ["c", "a", "b"]  # 0.8, 0.7, 0.3
    assert cosine([1.0, 0.0], [0.0, 2.0]) == 0.0 and cosine([1.0, 1.0], [2.0, 2.0]) > 0.999


def test_the_union_scores_keyword_only_candidates_by_their_stored_vectors() -> None:
    by_vector = [hit("v1", 0.9), hit("v2", 0.8)]
    deep = [hit("k1", 5.0), hit("v2", 4.0)]
    asked: list[list[str]] = []

    def vectors_of(ids: list[str]) -> dict[str, list[float]]:
        asked.append(ids)
        return {"k1": [1.0, 0.0]}

    top = fuse_union(by_vector, deep, 40, [1.0, 0.0], vectors_of, 0.5, ceiling=10.0)
    assert asked == [["k1"]]
    # k1: similarity 1.0 (its stored vector is the query's) and the best BM25: first.
    assert [h.id for h in top] == ["k1", "v2", "v1"]


def test_a_deep_list_cut_short_by_the_server_still_gives_its_floor() -> None:
    # Weaviate caps the deep keyword list at QUERY_MAXIMUM_RESULTS: a capped list is full
    # though shorter than KEYWORD_DEPTH * pool, so a vector candidate missing from it is
    # given its weakest score, not 0.
    def fused(deep_full: bool | None) -> dict[str, float]:
        deep = [hit("k1", 5.0), hit("k2", 2.0)]
        top = fuse_union([hit("v1", 0.9)], deep, 3, [1.0, 0.0], lambda ids: {}, 0.0, 5.0,
                         deep_full=deep_full)
        return {h.id: h.score for h in top}

    assert fused(None)["v1"] == 0.0  # 2 hits < KEYWORD_DEPTH * 3: the list holds every match
    assert fused(True)["v1"] == pytest.approx(0.4)  # at most the weakest: 2.0 / 5.0
