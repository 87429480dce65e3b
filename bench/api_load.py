"""API load: `freshrag serve` over N chunks, 16 concurrent clients, vs the same queries
in-process.

The N chunks are a harness: random unit vectors with generated text written by the bench
through the index adapter (embedding 100k real chunks would take longer than the bench). The
queries go through the product's `freshrag serve` (the installed command) and its /search;
the in-process figure is the harness calling the index adapter directly."""

from __future__ import annotations

import asyncio
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import dist, launch, stop
from freshrag.index.lancedb import LanceIndex
from freshrag.model import Mode, Record
from tests.corpus import sentence
from tests.e2e.userpath import free_port

QUERIES = ["quarterly budget review", "security incident report", "warehouse shipment delay",
           "customer contract renewal", "database backup policy", "training schedule",
           "supplier payment invoice", "network access change", "release quality process"]


def fill(home: Path, chunks: int, dim: int) -> None:
    index = LanceIndex(home / "index")
    rng = random.Random(3)
    vecs = np.random.default_rng(3).standard_normal((chunks, dim)).astype("float32")
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    now = time.time()
    for start in range(0, chunks, 10_000):
        batch = [Record(id=f"{i:08d}", vector=vecs[i].tolist(), text=sentence(rng) + " "
                        + sentence(rng), source="docs", doc_key=f"doc{i // 20}.md",
                        chunk_hash=f"{i:064d}", ordinal=i % 20, title="", location="",
                        page=None, source_modified_at=now, indexed_at=now)
                 for i in range(start, min(start + 10_000, chunks))]
        index.upsert(batch)
    index.optimize()
    index.close()


async def load(url: str, clients: int, seconds: float) -> list[float]:
    import httpx

    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(n: int) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            i = n
            while time.perf_counter() < deadline:
                body = {"query": QUERIES[i % len(QUERIES)], "k": 5, "mode": "hybrid"}
                start = time.perf_counter()
                r = await http.post(url + "/search", json=body)
                r.raise_for_status()
                latencies.append((time.perf_counter() - start) * 1000)
                i += clients

    await asyncio.gather(*(client(n) for n in range(clients)))
    return latencies


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120,
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


def run(embedder: Any, chunks: int, seconds: float, clients: int = 16) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        fill(home, chunks, embedder.dim)
        config = Path(tmp) / "freshrag.toml"
        config.write_text(f'home = "{home}"\n')
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = launch(config, "serve", "--port", str(port))
        try:
            wait_ready(url, proc)
            asyncio.run(load(url, clients, 2))  # warm-up
            latencies = asyncio.run(load(url, clients, seconds))
        finally:
            stop(proc)
        index = LanceIndex(home / "index")
        direct = []
        for i in range(200):
            q = QUERIES[i % len(QUERIES)]
            start = time.perf_counter()
            index.search(q, embedder.embed([q])[0], 5, Mode.hybrid)
            direct.append((time.perf_counter() - start) * 1000)
        index.close()
    api = dist(latencies)
    d = dist(direct)
    return {"chunks": chunks, "clients": clients, "seconds": seconds,
            "qps": round(len(latencies) / seconds, 1), "p50_ms": round(api["p50"], 1),
            "p99_ms": round(api["p99"], 1), "direct_p50_ms": round(d["p50"], 1),
            "direct_p99_ms": round(d["p99"], 1),
            "direct_qps_one_thread": round(1000 / d["mean"], 1),
            "measured": "product: POST /search of `freshrag serve`; harness: the index filled "
                        "with random vectors by the bench, and the in-process (direct) figures"}
