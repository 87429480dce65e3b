"""Bulk throughput: chunks/s through the whole engine vs raw model.encode of the same texts."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import freshrag.engine as engine_module
from bench.common import StageTimer, engine_for, write
from freshrag.model import Fingerprint, Item
from tests.corpus import markdown_doc


def make_corpus(root: Path, docs: int) -> None:
    """Prose with headings: 4 sections of 3 paragraphs of ~200 words per document."""
    for i in range(docs):
        write(root / f"d{i:04d}.md", markdown_doc(10_000 + i, sections=4, paragraphs=3,
                                                  words=200))


def run(embedder: Any, docs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "docs"
        make_corpus(root, docs)
        engine = engine_for(Path(tmp) / "home", root, embedder)
        # Both sides start warm: the model is loaded, and so is the parser (its child process
        # and unstructured's imports, a one-time cost of a few seconds).
        engine.parser.parse(Item(key="warm.md", data=b"# Warm\n\nup.\n",
                                 fingerprint=Fingerprint(0, 0), modified_at=0.0,
                                 location="warm.md", filename="warm.md"))
        timer = StageTimer()
        src = engine.source("docs")
        timer.patch(src, "read", "read")
        timer.patch(engine.parser, "parse", "parse")
        real_chunk = engine_module.chunk
        engine_module.chunk = timer.wrap("chunk", real_chunk)  # type: ignore[assignment]
        timer.patch(engine.embedder, "embed", "embed")
        for name in ("upsert", "delete", "ids_for"):
            timer.patch(engine.index, name, "write")
        for name in ("get", "put_many", "cached_vectors", "cache_vectors", "fingerprints"):
            timer.patch(engine.ledger, name, "ledger")
        try:
            start = time.perf_counter()
            report = engine.sync("docs")
            engine_s = time.perf_counter() - start
        finally:
            engine_module.chunk = real_chunk  # type: ignore[assignment]
            del engine.embedder.embed  # drop the instance wrapper
        texts = [h.text for key in sorted(engine.index.documents("docs"))
                 for h in engine.index.get_document("docs", key)]
        engine.close()
    start = time.perf_counter()
    embedder.embed(texts)
    raw_s = time.perf_counter() - start
    chunks = report.embedded
    breakdown = {k: round(v, 3) for k, v in sorted(timer.seconds.items())}
    breakdown["other"] = round(engine_s - sum(timer.seconds.values()), 3)
    return {
        "documents": docs, "chunks": chunks,
        "engine_s": round(engine_s, 3), "raw_encode_s": round(raw_s, 3),
        "engine_chunks_per_s": round(chunks / engine_s, 1),
        "raw_chunks_per_s": round(len(texts) / raw_s, 1),
        "ratio": round((chunks / engine_s) / (len(texts) / raw_s), 3),
        "breakdown_s": breakdown,
    }
