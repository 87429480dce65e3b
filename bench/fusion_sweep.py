"""`python -m bench.fusion_sweep [CORPUS...]`: how each fusion rule and alpha would rank the
quality bench's questions — a HARNESS, not the product path.

It opens the embedded index that `python -m bench --only quality` synced (run that first),
fetches each question's candidates once as hybrid search does (freshrag/index/fusion.py's
`union_scores` over LanceDB's vector and keyword searches), then fuses them under every rule
and alpha in-process. This is how the default rule and alpha were chosen — on the
django+sqlalchemy corpus only; the Python corpus is shown for comparison, not used to choose.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.quality_corpora import CORPORA, Corpus
from freshrag.embed import SentenceTransformerEmbedder
from freshrag.index.fusion import (
    KEYWORD_DEPTH,
    fuse_scored,
    keyword_ceiling,
    pool_size,
    union_scores,
)
from freshrag.index.lancedb import LanceIndex
from freshrag.model import Mode

ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
K = 50  # as the bench asks /search for
RRF_K = 60
MOST_TERMS = 32


def _by_max(s: Mapping[str, float]) -> dict[str, float]:
    hi = max(s.values(), default=0.0)
    return {i: max(x, 0.0) / hi if hi > 0 else 0.0 for i, x in s.items()}


def _min_max(s: Mapping[str, float]) -> dict[str, float]:
    lo, hi = min(s.values(), default=0.0), max(s.values(), default=0.0)
    return {i: (x - lo) / (hi - lo) if hi > lo else 0.0 for i, x in s.items()}


def _z(s: Mapping[str, float], clip: float | None = None) -> dict[str, float]:
    values = list(s.values())
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    if sd <= 0:
        return {i: 0.0 for i in s}
    mean = statistics.fmean(values)
    if clip is None:
        return {i: (x - mean) / sd for i, x in s.items()}
    return {i: min(max((x - mean) / sd, -clip), clip) / (2 * clip) + 0.5 for i, x in s.items()}


def _rrf(s: Mapping[str, float]) -> dict[str, float]:
    order = sorted(s, key=lambda i: (-s[i], i))
    return {i: 1.0 / (RRF_K + n) for n, i in enumerate(order, 1)}


# The alternatives measured against the product's rule (theoretical ranges: cosine as is,
# BM25 over the query's ceiling): name -> (vector normaliser, keyword normaliser).
Norm = Callable[[Mapping[str, float]], dict[str, float]]
ALTERNATIVES: dict[str, tuple[Norm, Norm | None]] = {
    "max (the rule before)": (_by_max, _by_max), "min-max": (_min_max, _min_max),
    "z-score": (_z, _z), "dbsf (z clipped at 3)": (lambda s: _z(s, 3.0), lambda s: _z(s, 3.0)),
    "rrf over the union": (_rrf, _rrf), "max / ceiling": (_by_max, None),
}


def alternative(row: dict[str, Any], name: str, alpha: float) -> list[str]:
    vnorm, knorm = ALTERNATIVES[name]
    ids = list(row["hits"])
    v = vnorm({i: row["v"].get(i, 0.0) for i in ids})
    kw = {i: max(row["k"].get(i, 0.0), 0.0) for i in ids}
    c = row["ceiling"]
    t = knorm(kw) if knorm else {i: min(x / c, 1.0) if c else 0.0 for i, x in kw.items()}
    order = sorted(ids, key=lambda i: (-(alpha * v[i] + (1 - alpha) * t[i]), i))
    return [row["hits"][i].doc_key for i in order[:K]]


def candidates(corpus: Corpus, embedder: SentenceTransformerEmbedder) -> list[dict[str, Any]]:
    ix = LanceIndex(corpus.cache / "home" / "index")
    judged = corpus.judgments()
    vectors = embedder.embed([q for q, _ in judged])
    return [_row(ix, q, rel, qv) for (q, rel), qv in zip(judged, vectors, strict=True)]


def _row(ix: LanceIndex, question: str, relevant: set[str], qv: list[float]) -> dict[str, Any]:
    pool = pool_size(K)
    by_vector = ix._search(Mode.vector, question, qv, pool, None)
    deep = ix._search(Mode.keyword, question, None, KEYWORD_DEPTH * pool, None)
    hits, vscore, kscore = union_scores(by_vector, deep, pool, qv, ix.vectors)
    ceiling = keyword_ceiling(question, lambda t: next(
        (h.score for h in ix._search(Mode.keyword, t, None, 1, None)), 0.0), MOST_TERMS,
        deep[0].score if deep else None)
    return {"ceiling": ceiling, "relevant": relevant, "hits": hits, "v": vscore, "k": kscore,
            "vector": [h.doc_key for h in by_vector[:K]],
            "keyword": [h.doc_key for h in deep[:K]]}


def measure(rows: list[dict[str, Any]], ranked: Any) -> tuple[float, float]:
    recall, rr = [], []
    for row in rows:
        docs: list[str] = []
        for d in ranked(row):
            if d not in docs:
                docs.append(d)
        relevant = row["relevant"]
        recall.append(len(relevant & set(docs[:5])) / len(relevant))
        first = next((n for n, d in enumerate(docs[:10], 1) if d in relevant), None)
        rr.append(1.0 / first if first else 0.0)
    return round(statistics.fmean(recall), 3), round(statistics.fmean(rr), 3)


def sweep(rows: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    out = {"vector": measure(rows, lambda r: r["vector"]),
           "keyword": measure(rows, lambda r: r["keyword"])}
    for alpha in ALPHAS:
        out[f"ceiling (product) a={alpha}"] = measure(rows, lambda r, a=alpha: [
            h.doc_key for h in fuse_scored(r["hits"], r["v"], r["k"], a, K, r["ceiling"])])
    for name in ALTERNATIVES:
        for alpha in ALPHAS:
            out[f"{name} a={alpha}"] = measure(
                rows, lambda r, n=name, a=alpha: alternative(r, n, a))
    return out


def unique_code_rows(embedder: SentenceTransformerEmbedder) -> list[dict[str, Any]]:
    """The issue's 30 notes alike but for a codeword, in a temporary embedded index: each rule
    should rank note5 first for these queries (reported as recall@5 / MRR@10 = 1 / 1)."""
    import tempfile

    from freshrag.model import Record

    words = ["north", "copper", "silent", "amber", "granite", "harbour", "crystal", "velvet",
             "iron", "maple"]
    garden = (" The garden behind the office needs watering twice a week in summer. Tomatoes,"
              " beans and courgettes grow along the south wall, and the compost is turned "
              "monthly.")
    texts = [f"The codeword zorblax{n}quint unlocks the {words[n % 10]} {words[n * 3 % 10]} "
             f"vault.{garden if n == 5 else ''}" for n in range(30)]
    ix = LanceIndex(Path(tempfile.mkdtemp()) / "index")
    ix.upsert([Record(id=f"id{n:02d}", vector=v, text=t, source="s", doc_key=f"note{n}",
                      chunk_hash=str(n), ordinal=0, title="", location="", page=None,
                      source_modified_at=0.0, indexed_at=0.0)
               for n, (t, v) in enumerate(zip(texts, embedder.embed(texts), strict=True))])
    queries = ["codeword zorblax5quint vault", "which vault does the codeword zorblax5quint "
               "unlock"]
    return [row for q, qv in zip(queries, embedder.embed(queries), strict=True)
            for row in [_row(ix, q, {"note5"}, qv)]]


def main(argv: list[str]) -> int:
    out = argv.pop(argv.index("--json") + 1) if "--json" in argv[:-1] else None
    argv = [a for a in argv if a != "--json"]
    embedder = SentenceTransformerEmbedder()
    results = {}
    for name in argv or list(CORPORA):
        results[name] = sweep(candidates(CORPORA[name], embedder))
    results["unique code (30 notes)"] = sweep(unique_code_rows(embedder))
    names = list(results)
    print("rule".ljust(34) + "".join(f"{n:>22}" for n in names))
    for key in results[names[0]]:
        cells = (f"{results[n][key][0]:.3f} / {results[n][key][1]:.3f}" for n in names)
        print(key.ljust(34) + "".join(f"{c:>22}" for c in cells))
    if out:
        Path(out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
