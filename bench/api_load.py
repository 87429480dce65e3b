"""API load: `freshrag serve`'s /search over N chunks at 1 and 16 clients, hybrid (the default
mode) and vector, exact vs ANN, with the server process's CPU per query and the ANN's
recall@10 against exact search, side by side in one run.

Harness steps (said so in the output): the N chunks are written by the bench through the
index adapter's write path (upsert, then optimize(), which trains the ANN index as a sync
would), with vectors sampled around 3,000 real MiniLM embeddings of real paragraphs of the
Python library reference (bench/ann_seed.py) and those paragraphs as text; embedding 100k
real chunks takes hours on 2 cores. The queries are real questions (the Python FAQ's), sent
to the installed `freshrag serve`, which embeds them itself. Its Server-Timing header splits
each answer into the query's embedding and the index's part, so the index figure holds
whichever embedding backend runs."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.ann_seed import around, seed, text_of
from bench.common import dist, launch, stop
from freshrag.config import IndexConfig
from freshrag.index.lancedb import LanceIndex
from freshrag.model import Mode, Record
from tests.e2e.userpath import free_port

EXACT = 10**12  # an ann_min_rows no index reaches: every vector query exact
TIMING = re.compile(r"(\w+);dur=([\d.]+)")


def questions() -> list[str]:
    from bench.quality_corpora import CORPORA

    corpus = CORPORA["python"]
    missing = corpus.missing()
    if missing:
        raise RuntimeError(missing)
    return [q for q, _ in corpus.judgments()]


def fill(home: Path, chunks: int, texts: list[str], seeds: np.ndarray) -> float:
    """The harness's index: `chunks` rows around the seeds; returns optimize()'s seconds."""
    index = LanceIndex(home / "index", ann=IndexConfig().ann())
    vectors, first, second = around(seeds, chunks, np.random.default_rng(3))
    now = time.time()
    for start in range(0, chunks, 10_000):
        index.upsert([Record(id=f"{i:08d}", vector=vectors[i].tolist(),
                             text=text_of(texts, first[i], second[i]), source="docs",
                             doc_key=f"doc{i // 20}.md", chunk_hash=f"{i:064d}",
                             ordinal=i % 20, title="", location="", page=None,
                             source_modified_at=now, indexed_at=now)
                      for i in range(start, min(start + 10_000, chunks))])
    started = time.perf_counter()
    index.optimize()
    took = time.perf_counter() - started
    if index.ann_state != "built":
        raise RuntimeError(f"the ANN index was not built ({index.ann_state})")
    index.close()
    return took


def recall(home: Path, queries: list[str], vectors: list[list[float]]) -> dict[str, float]:
    """Mean recall@10 of ANN against exact search (vector and hybrid), in the bench's process."""
    ann = IndexConfig().ann()
    exact_ix = LanceIndex(home / "index", ann=dataclasses.replace(ann, min_rows=EXACT))
    ann_ix = LanceIndex(home / "index", ann=ann)
    out: dict[str, float] = {}
    for mode in (Mode.vector, Mode.hybrid):
        shares = []
        for q, v in zip(queries, vectors, strict=True):
            want = {h.id for h in exact_ix.search(q, v, 10, mode)}
            got = {h.id for h in ann_ix.search(q, v, 10, mode)}
            shares.append(len(want & got) / max(len(want), 1))
        out[mode.value] = round(float(np.mean(shares)), 3)
    exact_ix.close()
    ann_ix.close()
    return out


async def load(url: str, queries: list[str], clients: int, seconds: float,
               mode: str = "hybrid") -> dict[str, list[float]]:
    import httpx

    samples: dict[str, list[float]] = {"total": [], "embed": [], "index": []}
    deadline = time.perf_counter() + seconds

    async def client(n: int) -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            i = n
            while time.perf_counter() < deadline:
                body = {"query": queries[i % len(queries)], "k": 5, "mode": mode}
                start = time.perf_counter()
                r = await http.post(url + "/search", json=body)
                r.raise_for_status()
                samples["total"].append((time.perf_counter() - start) * 1000)
                for name, ms in TIMING.findall(r.headers.get("server-timing", "")):
                    samples[name].append(float(ms))
                i += clients

    await asyncio.gather(*(client(n) for n in range(clients)))
    return samples


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads so far (load does not inflate
    it the way it does wall time)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180,
               headers: dict[str, str] | None = None) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"freshrag serve exited with {proc.returncode}")
        try:
            if httpx.get(url + "/ready", timeout=2, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("freshrag serve did not become ready")


def serve_figures(tmp: Path, home: Path, queries: list[str], seconds: float, label: str,
                  index_toml: str) -> dict[str, Any]:
    """Per mode (hybrid, the default, then vector): latency at 1 and 16 closed-loop clients,
    the server's own embed/index split (Server-Timing), and its CPU ms per query."""
    config = tmp / f"{label}.toml"
    config.write_text(f'home = "{home}"\n[index]\n{index_toml}')
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = launch(config, "serve", "--port", str(port))
    out: dict[str, Any] = {}
    try:
        wait_ready(url, proc)
        for mode in ("hybrid", "vector"):
            asyncio.run(load(url, queries, 16, 2, mode))  # warm-up
            out[mode] = {}
            for clients in (1, 16):
                cpu = cpu_seconds(proc.pid)
                s = asyncio.run(load(url, queries, clients, seconds, mode))
                cpu = cpu_seconds(proc.pid) - cpu
                total = dist(s["total"])
                out[mode][str(clients)] = {
                    "qps": round(len(s["total"]) / seconds, 1),
                    "p50_ms": round(total["p50"], 1), "p99_ms": round(total["p99"], 1),
                    "cpu_ms_per_query": round(cpu * 1000 / len(s["total"]), 1),
                    "embed_p50_ms": round(dist(s["embed"])["p50"], 1) if s["embed"] else None,
                    "index_p50_ms": round(dist(s["index"])["p50"], 1) if s["index"] else None,
                    "index_p99_ms": round(dist(s["index"])["p99"], 1) if s["index"] else None}
    finally:
        stop(proc)
    return out


def run(embedder: Any, chunks: int, seconds: float) -> dict[str, Any]:
    texts, seeds = seed(embedder)
    queries = questions()
    ann = IndexConfig().ann()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        build_s = fill(home, chunks, texts, seeds)
        rec = recall(home, queries, embedder.embed(queries))
        exact = serve_figures(Path(tmp), home, queries, seconds, "exact",
                              f"ann_min_rows = {EXACT}\n")
        approx = serve_figures(Path(tmp), home, queries, seconds, "ann", "")
    return {"chunks": chunks, "seconds": seconds, "seeds": len(seeds), "queries": len(queries),
            "ann": {"index_type": ann.index_type, "nprobes": ann.nprobes, "ef": ann.ef,
                    "refine_factor": ann.refine_factor, "min_rows": ann.min_rows,
                    "build_s": round(build_s, 1)},
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "recall_at_10": rec, "exact": exact, "ann_served": approx,
            "measured": "product: POST /search of `freshrag serve` (it embeds the queries; "
                        "embed/index split from its Server-Timing header); harness: the index "
                        "written by the bench through the adapter with vectors sampled around "
                        "real embeddings, and the recall@10 computed in the bench's process; "
                        "cpu_ms_per_query: the serve process's user+system CPU (psutil) over "
                        "the requests of that run"}
