"""Seed vectors for the ANN bench: real MiniLM embeddings of real paragraphs of the Python
library reference (`apt-get install python3.11-doc`), cached under $TMPDIR between runs.

The 100k-row index of bench/api_load.py is built from these by sampling around them (a
harness step, said so in its output); the queries it serves are real questions, embedded by
the served `freshrag serve`."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

DOCS = Path("/usr/share/doc/python3.11-doc/html/library")
CACHE = Path(tempfile.gettempdir()) / "freshrag-bench-ann-seed.npz"
WORDS = 80  # about one chunk of the default chunker (median 81 words on this corpus)


def paragraphs(limit: int) -> list[str]:
    """Up to `limit` ~WORDS-word passages, a few from each library page in turn."""
    import lxml.html

    per_page: list[list[str]] = []
    for page in sorted(DOCS.glob("*.html")):
        root = lxml.html.parse(str(page)).getroot()
        body = root.find(".//div[@role='main']")
        body = root if body is None else body
        words = re.sub(r"\s+", " ", body.text_content()).replace("¶", "").split()
        per_page.append([" ".join(words[i:i + WORDS]) for i in range(0, len(words), WORDS)
                         if len(words[i:i + WORDS]) >= WORDS // 2])
    out: list[str] = []
    depth = 0
    while len(out) < limit and any(depth < len(p) for p in per_page):
        out += [p[depth] for p in per_page if depth < len(p)]
        depth += 1
    return out[:limit]


def seed(embedder: Any, count: int = 3000) -> tuple[list[str], np.ndarray]:
    """(texts, unit vectors) of `count` real passages; embedded once, then read from CACHE."""
    if CACHE.exists():
        data = np.load(CACHE, allow_pickle=False)
        if len(data["texts"]) >= count:
            return [str(t) for t in data["texts"][:count]], data["vectors"][:count]
    if not DOCS.is_dir():
        raise RuntimeError(f"{DOCS} missing: apt-get install python3.11-doc")
    texts = paragraphs(count)
    vectors = np.asarray(embedder.embed(texts), dtype="float32")
    np.savez(CACHE, texts=np.asarray(texts), vectors=vectors)
    return texts, vectors


def around(seeds: np.ndarray, n: int, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` unit vectors near the seeds' manifold: a random mix of two real embeddings (the
    first weighted 0.6..1) plus a little isotropic noise, renormalised; with the two seeds'
    indexes. Not uniform random: the neighbourhoods keep the shape real text gives them."""
    first = rng.integers(0, len(seeds), n)
    second = rng.integers(0, len(seeds), n)
    a, b = seeds[first], seeds[second]
    w = rng.uniform(0.6, 1.0, (n, 1)).astype("float32")
    noise = rng.standard_normal(a.shape).astype("float32") * (0.25 / np.sqrt(a.shape[1]))
    v = w * a + (1 - w) * b + noise
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype("float32"), first, second


def text_of(texts: list[str], first: int, second: int) -> str:
    """A row's text, mixed like its vector: its first seed's passage, then the start of its
    second's (no two rows share a text, so BM25 has no ties among copies)."""
    return texts[first] + " " + " ".join(texts[second].split()[:20])
