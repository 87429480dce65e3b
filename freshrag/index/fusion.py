"""Hybrid fusion shared by the index backends: every candidate scored by both signals."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from freshrag.model import Hit

# Candidates fetched from each side before fusion: at least this many, and POOL_FACTOR * k.
MIN_POOL = 40
POOL_FACTOR = 4
# The keyword query behind hybrid fetches this many times the pool, to score vector candidates.
KEYWORD_DEPTH = 5


def pool_size(k: int) -> int:
    return max(MIN_POOL, POOL_FACTOR * k)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def _by_max(scores: Mapping[str, float]) -> dict[str, float]:
    hi = max(scores.values(), default=0.0)
    return {i: s / hi if hi > 0 else 0.0 for i, s in scores.items()}


def fuse_scored(hits: Mapping[str, Hit], vector: Mapping[str, float],
                keyword: Mapping[str, float], alpha: float, k: int) -> list[Hit]:
    """Fuse the union of both sides' candidates, each with both of its real scores.

    `vector` holds every candidate's cosine similarity to the query; `keyword` its BM25
    score (absent: the text matches no query term, score 0). Each side is divided by its best
    score among the candidates (negative similarities count 0), so a side keeps its own
    contrast: near-equal vector similarities stay near-equal, and the one text that holds a
    rare query term keeps its lead on the keyword side. Min-max normalisation would stretch
    the smallest spread to the full [0, 1] and let it outvote the other side. Then
    score = alpha * vector + (1 - alpha) * keyword. Ties go to the lower id."""
    ids = list(hits)
    v = _by_max({i: max(vector.get(i, 0.0), 0.0) for i in ids})
    t = _by_max({i: max(keyword.get(i, 0.0), 0.0) for i in ids})
    scored = sorted(((alpha * v[i] + (1 - alpha) * t[i], i) for i in ids),
                    key=lambda pair: (-pair[0], pair[1]))
    out = []
    for score, i in scored[:k]:
        hit = hits[i]
        hit.score = score
        out.append(hit)
    return out


def fuse(vector_hits: list[Hit], keyword_hits: list[Hit], alpha: float, k: int) -> list[Hit]:
    """Fuse two ranked lists whose hits carry their own side's score only. A hit missing
    from one list counts 0 on that side; backends that can score the whole union (LanceDB,
    Weaviate) call fuse_scored with both real scores instead."""
    hits = {h.id: h for h in [*keyword_hits, *vector_hits]}
    vector = {h.id: h.score for h in vector_hits}
    keyword = {h.id: h.score for h in keyword_hits}
    if vector_hits:  # a hit the vector side did not return sits below its weakest one
        floor = min(vector.values())
        vector = {i: vector.get(i, floor) for i in hits}
    return fuse_scored(hits, vector, keyword, alpha, k)


def fuse_union(by_vector: list[Hit], deep_keyword: list[Hit], pool: int,
               query_vector: Sequence[float],
               vectors_of: Callable[[list[str]], Mapping[str, Sequence[float]]],
               alpha: float, deep_full: bool | None = None) -> list[Hit]:
    """Hybrid over the union of the top `pool` of each side, every candidate with both real
    scores. `by_vector`: the vector side's top hits (score = cosine similarity);
    `deep_keyword`: the keyword side's top KEYWORD_DEPTH * pool hits (score = BM25), whose
    first `pool` are candidates and the rest only score vector candidates (a full-text query
    narrowed to some ids would score them against those ids' statistics). A keyword-only
    candidate's similarity comes from its stored vector (`vectors_of`); a vector candidate
    missing from a full deep list is given the weakest score in it (at most that), from a
    list that is not full, 0 (it matches no term). `deep_full` says whether the deep list
    stopped at its limit (a backend that caps the depth, or drops hits its exact filter
    re-check refuses, knows); by default, it is full when it holds KEYWORD_DEPTH * pool hits."""
    by_keyword = deep_keyword[:pool]
    hits = {h.id: h for h in [*by_keyword, *by_vector]}
    vscore = {h.id: h.score for h in by_vector}
    kscore = {h.id: h.score for h in deep_keyword}
    only_keyword = [i for i in hits if i not in vscore]
    if only_keyword:
        stored = vectors_of(only_keyword)
        vscore.update({i: cosine(query_vector, v) for i, v in stored.items()})
    if deep_full is None:
        deep_full = len(deep_keyword) >= KEYWORD_DEPTH * pool
    if deep_keyword and deep_full:
        floor = deep_keyword[-1].score
        kscore.update({i: floor for i in hits if i not in kscore})
    return fuse_scored(hits, vscore, kscore, alpha, pool)
