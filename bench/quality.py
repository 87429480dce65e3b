"""Retrieval quality on real documentation with judgments no one on the team wrote.

Corpora (bench/quality_corpora.py): the Python 3.11 library reference, and the Django 3.2 and
SQLAlchemy 1.4 manuals together, as Debian ships them (`apt-get install python3.11-doc
python-django-doc python-sqlalchemy-doc`). Judgments: each manual's FAQ questions (faq/*.html,
each a section whose title ends in "?") and the pages its answer links to: the relevant
documents for that question, as the FAQ's authors chose them. The FAQ pages themselves are not
indexed. Every page an answer links to is in the corpus, with every 8th other page as a
distractor.

Measured through the product's own entry points: `freshrag sync --json` on a freshrag.toml,
then `freshrag serve`'s `POST /search` (every mode, alphas as request fields) and
`GET /documents/{source}/{key}` (the chunks as stored).
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.api_load import free_port, wait_ready
from bench.common import folder_config, launch, stop, sync_json
from bench.quality_corpora import CORPORA, Corpus

# Lines that are Sphinx page chrome, never content.
NAV_LINE = re.compile(r"^(navigation|previous topic|next topic|this page|report a bug|"
                      r"show source|table of contents|quick search|(index|modules|next|previous)"
                      r" \||python »|.*documentation »|© copyright.*|theme auto light dark)$",
                      re.IGNORECASE)
WORDS_TO_TOKENS = 1.3


def is_navigation(text: str) -> bool:
    return any(NAV_LINE.match(line.strip()) for line in text.split("\n") if line.strip())


class Api:
    """A running `freshrag serve`: search and documents, as a client sees them."""

    def __init__(self, url: str):
        import httpx

        self.url, self.http = url, httpx.Client(timeout=60)

    def search(self, query: str, k: int, mode: str, alpha: float | None = None
               ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"query": query, "k": k, "mode": mode}
        if alpha is not None:
            body["alpha"] = alpha
        r = self.http.post(self.url + "/search", json=body)
        r.raise_for_status()
        return list(r.json()["hits"])

    def document(self, source: str, key: str) -> list[dict[str, Any]]:
        from urllib.parse import quote

        r = self.http.get(f"{self.url}/documents/{source}/{quote(key)}")
        r.raise_for_status()
        return list(r.json()["chunks"])


@contextmanager
def served(config: Path) -> Iterator[Api]:
    port = free_port()
    proc = launch(config, "serve", "--port", str(port))
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        yield Api(f"http://127.0.0.1:{port}")
    finally:
        stop(proc)


def ranked_docs(api: Api, query: str, mode: str, depth: int = 10,
                alpha: float | None = None) -> list[str]:
    """Documents in the order of their best chunk."""
    seen: list[str] = []
    for hit in api.search(query, k=50, mode=mode, alpha=alpha):
        if hit["doc_key"] not in seen:
            seen.append(hit["doc_key"])
        if len(seen) == depth:
            break
    return seen


def retrieval(api: Api, judged: list[tuple[str, set[str]]]) -> dict[str, dict[str, float]]:
    """recall@5 and MRR@10 of documents per mode (hybrid at the configured alpha), and of
    hybrid at other alphas to show how sensitive fusion is (reported, not used to pick)."""
    out: dict[str, dict[str, float]] = {}
    runs: list[tuple[str, str, float | None]] = [
        ("hybrid", "hybrid", None), ("vector", "vector", None), ("keyword", "keyword", None),
        *((f"hybrid alpha={a}", "hybrid", a) for a in (0.25, 0.75))]
    for name, mode, alpha in runs:
        recall, rr = [], []
        for question, relevant in judged:
            docs = ranked_docs(api, question, mode, alpha=alpha)
            recall.append(len(relevant & set(docs[:5])) / len(relevant))
            first = next((n for n, d in enumerate(docs, 1) if d in relevant), None)
            rr.append(1.0 / first if first else 0.0)
        out[name] = {"recall@5": round(statistics.fmean(recall), 3),
                           "mrr@10": round(statistics.fmean(rr), 3)}
    return out


def chunk_figures(api: Api, pages: dict[str, Path], target_tokens: int) -> dict[str, Any]:
    texts: list[str] = []
    titles: list[str] = []
    for key in pages:
        for chunk in api.document("docs", key):
            texts.append(chunk["text"])
            titles.append(chunk.get("title") or "")
    words = sorted(len(t.split()) for t in texts)
    megabytes = sum(p.stat().st_size for p in pages.values()) / 1e6
    median = statistics.median(words)
    nav = [t for t in texts if is_navigation(t)]
    return {
        "pages": len(pages), "html_mb": round(megabytes, 2), "chunks": len(texts),
        "chunks_per_mb": round(len(texts) / megabytes, 1),
        "median_words": median,
        "median_vs_target": round(median * WORDS_TO_TOKENS / target_tokens, 3),
        "under_20_words": round(sum(w < 20 for w in words) / len(words), 4),
        "navigation_chunks": len(nav), "navigation_examples": [t[:120] for t in nav[:3]],
        "titles_with_pilcrow": sum("¶" in t for t in titles),
    }


def unique_token_first() -> bool:
    """The issue's example: 30 notes alike but for a codeword; hybrid finds the one asked."""
    words = ["north", "copper", "silent", "amber", "granite", "harbour", "crystal", "velvet",
             "iron", "maple"]
    extra = (" The garden behind the office needs watering twice a week in summer. Tomatoes, "
             "beans and courgettes grow along the south wall.")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        for n in range(30):
            (folder / f"note{n}.md").write_text(
                f"# Note {n}\n\nThe codeword zorblax{n}quint unlocks the {words[n % 10]} "
                f"{words[n * 3 % 10]} vault.{extra if n == 5 else ''}\n")
        config = folder_config(Path(tmp), folder)
        sync_json(config)
        with served(config) as api:
            hits = api.search("codeword zorblax5quint vault", k=5, mode="hybrid")
        return bool(hits) and hits[0]["doc_key"] == "note5.md"


def measure(corpus: Corpus, target: int) -> dict[str, Any]:
    """One corpus: synced with `freshrag sync --json`, then served and asked; then the same
    with the torch backend in a home of its own (`vs_torch`: the default backend's vectors
    must rank as torch's do)."""
    judged = corpus.judgments()
    pages = corpus.pages()
    config = folder_config(corpus.cache, corpus.folder())
    started = time.time()
    report = sync_json(config)
    sync_s = time.time() - started
    with served(config) as api:
        figures = chunk_figures(api, pages, target)
        scores = retrieval(api, judged)
    torch_home = corpus.cache / "torch"
    torch_home.mkdir(exist_ok=True)
    torch_config = folder_config(torch_home, corpus.folder(), model={"backend": "torch"})
    sync_json(torch_config)
    with served(torch_config) as api:
        torch_scores = retrieval(api, judged)
    return {"corpus": corpus.name, "questions": len(judged), **figures, "retrieval": scores,
            "vs_torch": torch_scores,
            "sync": {"seconds": round(sync_s, 1), "embedded": report["chunks"]["embedded"]}}


def run(target: int = 160) -> dict[str, Any]:
    """Every corpus side by side. `target`: the default `chunk.target_tokens` (the config
    written sets no [chunk])."""
    for corpus in CORPORA.values():
        if (missing := corpus.missing()) is not None:
            raise SystemExit(f"bench quality: {missing}")
    from bench.reembed import freshrag_counts

    return {"target_tokens": target,
            "corpora": {name: measure(c, target) for name, c in CORPORA.items()},
            "unique_token_first": unique_token_first(),
            "reembed": freshrag_counts()["cases"]}
