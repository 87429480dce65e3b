"""Embedding backends side by side on the quality set: torch, onnx fp32/int8, openvino fp32/auto.

Product path: per backend a fresh home, `freshrag sync --json` of the quality corpus with
`[model] backend/precision` in freshrag.toml (chunks/s = chunks embedded / the report's
embed_seconds, and the whole sync's seconds), then `freshrag serve`'s `POST /search` in vector
mode for recall@5 on the FAQ judgments; `freshrag watch`'s RSS (the process and its children)
idle and after a burst (bench/memory.py). Harness (labelled): cosine of each backend's vectors to
torch's, on a sample of the stored chunks, embedded in this process."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import folder_config, sync_json
from bench.quality import Api, ranked_docs, served
from bench.quality_corpora import PYTHON, Corpus

VARIANTS = {  # name -> [model] keys
    "torch": {"backend": "torch", "precision": "fp32"},
    "onnx-fp32": {"backend": "onnx", "precision": "fp32"},
    "onnx-int8": {"backend": "onnx", "precision": "int8"},
    "openvino-fp32": {"backend": "openvino", "precision": "fp32"},
    "openvino-auto": {"backend": "openvino", "precision": "auto"},  # the default
}
WORK = Path(tempfile.gettempdir()) / "freshrag-bench-backends"


def config_for(tmp: Path, folder: Path, model: dict[str, str]) -> Path:
    return folder_config(tmp, folder, model={**model, "cache_dir": str(WORK / "models")})


def recall_at_5(api: Api, judged: list[tuple[str, set[str]]]) -> float:
    scores = []
    for question, relevant in judged:
        docs = ranked_docs(api, question, "vector")
        scores.append(len(relevant & set(docs[:5])) / len(relevant))
    return round(statistics.fmean(scores), 4)


def sample_texts(api: Api, keys: list[str], n: int = 200) -> list[str]:
    texts: list[str] = []
    for key in keys:
        texts += [c["text"] for c in api.document("docs", key)]
        if len(texts) >= n:
            break
    return texts[:n]


def cosines(texts: list[str]) -> dict[str, dict[str, float]]:
    """Harness: each backend's vectors of the same texts against torch's."""
    import numpy as np

    from freshrag.config import ModelConfig
    from freshrag.embed import SentenceTransformerEmbedder, make_embedder

    ref = np.array(SentenceTransformerEmbedder().embed(texts))
    out = {}
    for name, model in VARIANTS.items():
        if model["backend"] == "torch":
            continue
        config = ModelConfig(backend=model["backend"], precision=model["precision"],
                             cache_dir=WORK / "models")
        vec = np.array(make_embedder(config).embed(texts))
        cos = (vec * ref).sum(axis=1)
        out[name] = {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5)}
    return out


def run(burst: int = 300, corpus: Corpus = PYTHON, limit: int = 0) -> dict[str, Any]:
    """`limit`: only the first N corpus pages (0: all)."""
    from bench import memory

    judged = corpus.judgments()
    pages = corpus.pages()
    if limit:
        pages = dict(list(pages.items())[:limit])
        judged = [(q, rel & pages.keys()) for q, rel in judged if rel & pages.keys()]
    shutil.rmtree(WORK / "homes", ignore_errors=True)
    folder = WORK / "docs"
    shutil.rmtree(folder, ignore_errors=True)
    for key, page in pages.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(page, folder / key)
    first_key, first_page = next(iter(pages.items()))
    rows: dict[str, dict[str, Any]] = {}
    sample: list[str] = []
    for name, model in VARIANTS.items():
        tmp = WORK / "homes" / name
        tmp.mkdir(parents=True)
        config = config_for(tmp, folder, model)
        warm = tmp / "warm"
        (warm / "docs").mkdir(parents=True)
        shutil.copy2(first_page, warm / "docs" / Path(first_key).name)
        sync_json(config_for(warm, warm / "docs", model))  # the one-time export: not timed
        began = time.perf_counter()
        report = sync_json(config)
        took = time.perf_counter() - began
        embedded = report["chunks"]["embedded"]
        row: dict[str, Any] = {"chunks": embedded, "sync_s": round(took, 1),
                               "embed_s": report["embed_seconds"],
                               "chunks_per_s": round(embedded / report["embed_seconds"], 1)}
        with served(config) as api:
            row["recall@5_vector"] = recall_at_5(api, judged)
            if not sample:
                sample = sample_texts(api, list(pages))
        print(f"   {name}: {row}", flush=True)
        row["watch_rss"] = memory.run(burst, model)
        rows[name] = row
    base = rows["torch"]
    for row in rows.values():
        row["x_torch"] = round(row["chunks_per_s"] / base["chunks_per_s"], 2)
        row["recall_delta"] = round(row["recall@5_vector"] - base["recall@5_vector"], 4)
    cos = cosines(sample)
    for name, c in cos.items():
        rows[name]["cosine_to_torch"] = c
    return {"variants": rows, "questions": len(judged), "pages": len(pages),
            "measured": "product: freshrag sync --json (embed_seconds), serve /search vector "
                        "mode, watch RSS tree; harness: cosine_to_torch"}
