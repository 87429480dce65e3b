"""Hybrid fusion shared by the index backends: every candidate scored by both signals."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from freshrag.model import Hit

# Candidates fetched from each side before fusion: at least this many, and POOL_FACTOR * k.
MIN_POOL = 40
POOL_FACTOR = 4
# The keyword query behind hybrid fetches this many times the pool, to score vector candidates.
KEYWORD_DEPTH = 5
# A query's words looked up alone for its keyword ceiling: at most this many (the rest estimated).
MOST_TERMS = 32
_WORD = re.compile(r"\w+")
Scored = tuple[str, float]  # (id, score)


def pool_size(k: int) -> int:
    return max(MIN_POOL, POOL_FACTOR * k)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def cosines(query: Sequence[float], stored: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """cosine(query, v) of every stored vector, in one matrix product (float64, as cosine)."""
    if not stored:
        return {}
    import numpy as np

    matrix = np.asarray(list(stored.values()), dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(q)
    dots = matrix @ q
    sims = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    return dict(zip(stored, sims.tolist(), strict=True))


def query_terms(text: str) -> Counter[str]:
    """The query's words, lower-cased, with their counts: at least as fine as either backend's
    tokenizer splits them (a stopword or a stem the backend folds only loosens the bound)."""
    return Counter(_WORD.findall(text.lower()))


def ceiling_terms(text: str, most_terms: int) -> list[str]:
    """The words of `text` whose best score alone the keyword ceiling asks for (none for a
    one-word query: its deep list's best is that word's best)."""
    terms = query_terms(text)
    return [] if len(terms) <= 1 else list(terms)[:max(most_terms, 1)]


def keyword_ceiling(text: str, best_for: Callable[[str], float], most_terms: int,
                    deep_best: float | None = None) -> float:
    """The most BM25 any text could score for `text`: BM25 adds up over query terms, so no
    text scores more than the sum over terms of the best score of that term alone
    (`best_for(term)`: one keyword query of limit 1, asked for ceiling_terms(text)). A query
    of one word has it already (`deep_best`, its deep list's best; None or 0 when that list
    is empty). Past `most_terms` distinct words, the rest count as the mean of those asked
    (the bound becomes an estimate; a score above it is capped at 1)."""
    terms = query_terms(text)
    if len(terms) == 1:
        return max(deep_best or 0.0, 0.0)
    best = {t: max(best_for(t), 0.0) for t in ceiling_terms(text, most_terms)}
    mean = sum(best.values()) / len(best) if best else 0.0
    return sum(n * best.get(t, mean) for t, n in terms.items())


def rank(ids: Iterable[str], vector: Mapping[str, float], keyword: Mapping[str, float],
         alpha: float, k: int, ceiling: float) -> list[Scored]:
    """The top `k` of `ids` as (id, fused score), best first: see fuse_scored."""
    scored = []
    for i in ids:
        v = max(vector.get(i, 0.0), 0.0)
        t = min(max(keyword.get(i, 0.0), 0.0) / ceiling, 1.0) if ceiling > 0 else 0.0
        scored.append((alpha * v + (1 - alpha) * t, i))
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    return [(i, score) for score, i in scored[:k]]


def fuse_scored(hits: Mapping[str, Hit], vector: Mapping[str, float],
                keyword: Mapping[str, float], alpha: float, k: int,
                ceiling: float) -> list[Hit]:
    """Fuse the union of both sides' candidates, each with both of its real scores, each side
    on its theoretical range rather than the candidates' spread:
    score = alpha * max(cosine, 0) + (1 - alpha) * min(BM25 / ceiling, 1).
    `ceiling` (keyword_ceiling) is the most BM25 any text could score for the query, so the
    keyword side says how much of the query a text matches, weighted by how rare its words
    are: a product code found nowhere else fills most of the ceiling and decides, while the
    best match for a question of common words covers a small part of it and the vectors
    decide. Neither side is stretched to [0, 1] over the candidates (min-max, z-scores,
    dividing by the best would make near-equal scores look far apart). Ties go to the
    lower id."""
    out = []
    for i, score in rank(hits, vector, keyword, alpha, k, ceiling):
        hit = hits[i]
        hit.score = score
        out.append(hit)
    return out


def fuse(vector_hits: list[Hit], keyword_hits: list[Hit], alpha: float, k: int) -> list[Hit]:
    """Fuse two ranked lists whose hits carry their own side's score only. A hit missing
    from one list counts as the weakest of that list's (vector) or 0 (keyword); the keyword
    ceiling is taken as the list's best score. Backends that can score the whole union
    (LanceDB, Weaviate) call fuse_union with both real scores instead."""
    hits = {h.id: h for h in [*keyword_hits, *vector_hits]}
    vector = {h.id: h.score for h in vector_hits}
    keyword = {h.id: h.score for h in keyword_hits}
    if vector_hits:  # a hit the vector side did not return sits below its weakest one
        floor = min(vector.values())
        vector = {i: vector.get(i, floor) for i in hits}
    return fuse_scored(hits, vector, keyword, alpha, k, max(keyword.values(), default=0.0))


def union_score_maps(by_vector: Sequence[Scored], deep_keyword: Sequence[Scored], pool: int,
                     query_vector: Sequence[float],
                     vectors_of: Callable[[list[str]], Mapping[str, Sequence[float]]],
                     deep_full: bool | None = None
                     ) -> tuple[list[str], dict[str, float], dict[str, float]]:
    """The candidates' ids (the top `pool` of each side) and both real scores of each, from
    (id, score) lists: see fuse_union."""
    ids = list(dict.fromkeys([*(i for i, _ in deep_keyword[:pool]), *(i for i, _ in by_vector)]))
    vscore = dict(by_vector)
    kscore = dict(deep_keyword)
    only_keyword = [i for i in ids if i not in vscore]
    if only_keyword:
        vscore.update(cosines(query_vector, vectors_of(only_keyword)))
    if deep_full is None:
        deep_full = len(deep_keyword) >= KEYWORD_DEPTH * pool
    if deep_keyword and deep_full:
        floor = deep_keyword[-1][1]
        kscore.update({i: floor for i in ids if i not in kscore})
    return ids, vscore, kscore


def union_scores(by_vector: list[Hit], deep_keyword: list[Hit], pool: int,
                 query_vector: Sequence[float],
                 vectors_of: Callable[[list[str]], Mapping[str, Sequence[float]]],
                 deep_full: bool | None = None
                 ) -> tuple[dict[str, Hit], dict[str, float], dict[str, float]]:
    """The candidates (the top `pool` of each side) and both real scores of each: see
    fuse_union."""
    ids, vscore, kscore = union_score_maps(
        [(h.id, h.score) for h in by_vector], [(h.id, h.score) for h in deep_keyword], pool,
        query_vector, vectors_of, deep_full)
    hits = {h.id: h for h in [*deep_keyword[:pool], *by_vector]}
    return {i: hits[i] for i in ids}, vscore, kscore


def fuse_union_ids(by_vector: Sequence[Scored], deep_keyword: Sequence[Scored], pool: int,
                   query_vector: Sequence[float],
                   vectors_of: Callable[[list[str]], Mapping[str, Sequence[float]]],
                   alpha: float, ceiling: float, deep_full: bool | None = None
                   ) -> list[Scored]:
    """fuse_union over (id, score) lists: the fused top `pool` as (id, score), best first (a
    backend that reads the full rows of the winners only, after fusing)."""
    ids, vscore, kscore = union_score_maps(by_vector, deep_keyword, pool, query_vector,
                                           vectors_of, deep_full)
    return rank(ids, vscore, kscore, alpha, pool, ceiling)


def fuse_union(by_vector: list[Hit], deep_keyword: list[Hit], pool: int,
               query_vector: Sequence[float],
               vectors_of: Callable[[list[str]], Mapping[str, Sequence[float]]],
               alpha: float, ceiling: float, deep_full: bool | None = None) -> list[Hit]:
    """Hybrid over the union of the top `pool` of each side, every candidate with both real
    scores. `by_vector`: the vector side's top hits (score = cosine similarity);
    `deep_keyword`: the keyword side's top KEYWORD_DEPTH * pool hits (score = BM25), whose
    first `pool` are candidates and the rest only score vector candidates (a full-text query
    narrowed to some ids would score them against those ids' statistics). A keyword-only
    candidate's similarity comes from its stored vector (`vectors_of`); a vector candidate
    missing from a full deep list is given the weakest score in it (at most that), from a
    list that is not full, 0 (it matches no term). `deep_full` says whether the deep list
    stopped at its limit (a backend that caps the depth, or drops hits its exact filter
    re-check refuses, knows); by default, it is full when it holds KEYWORD_DEPTH * pool hits.
    `ceiling`: keyword_ceiling of the query."""
    hits, vscore, kscore = union_scores(by_vector, deep_keyword, pool, query_vector,
                                        vectors_of, deep_full)
    return fuse_scored(hits, vscore, kscore, alpha, pool, ceiling)
