"""Bulk throughput: chunks/s of `freshrag sync --json` (its own report) vs raw model.encode of
the same chunk texts in the bench process (the harness denominator)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import folder_config, sync_json, write
from tests.corpus import markdown_doc


def make_corpus(root: Path, docs: int) -> None:
    """Prose with headings: 4 sections of 3 paragraphs of ~200 words per document."""
    for i in range(docs):
        write(root / f"d{i:04d}.md", markdown_doc(10_000 + i, sections=4, paragraphs=3,
                                                  words=200))


def indexed_texts(home: Path, source: str) -> list[str]:
    """The chunk texts the sync wrote, read back from its index (to time model.encode on)."""
    from freshrag.index.lancedb import LanceIndex

    index = LanceIndex(home / "index")
    try:
        return [h.text for key in sorted(index.documents(source))
                for h in index.get_document(source, key)]
    finally:
        index.close()


def run(embedder: Any, docs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        # A fresh process's fixed cost (model load, parser start), from a one-file sync.
        write(tmp / "one" / "docs" / "a.md", "# One\n\nA single short document.\n")
        startup_s = sync_json(folder_config(tmp / "one", tmp / "one" / "docs"))["seconds"]
        make_corpus(tmp / "docs", docs)
        report = sync_json(folder_config(tmp, tmp / "docs"))
        texts = indexed_texts(tmp / "home", "docs")
    chunks, sync_s = report["chunks"]["embedded"], report["seconds"]
    start = time.perf_counter()
    embedder.embed(texts)  # warm: the bench loaded the model before
    raw_s = time.perf_counter() - start
    return {
        "documents": docs, "chunks": chunks, "sync_s": sync_s,
        "startup_s": startup_s, "raw_encode_s": round(raw_s, 3),
        "engine_chunks_per_s": round(chunks / sync_s, 1),
        "raw_chunks_per_s": round(len(texts) / raw_s, 1),
        "ratio": round((chunks / sync_s) / (len(texts) / raw_s), 3),
        "ratio_warm": round((chunks / max(sync_s - startup_s, 1e-3)) / (len(texts) / raw_s), 3),
        "measured": "product: `freshrag sync --json` (its chunks.embedded / seconds, a fresh "
                    "process: model load and parser start included); harness: model.encode of "
                    "the same texts in the bench process, model already loaded",
    }
