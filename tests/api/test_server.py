"""A real uvicorn on a loopback port: concurrent searches share model calls, the loop stays
responsive,
and `freshrag serve` in its own process sees syncs made by another process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from freshrag.api import create_app
from freshrag.embed import SentenceTransformerEmbedder
from freshrag.engine import Engine
from tests.api.conftest import settings_for, write_docs

QUERIES = ["travel reimbursement", "lost laptop", "lunch pasta", "buddy onboarding",
           "password length", "flight booking", "phishing email", "first week change"]


class GatedEmbedder:
    """The real model behind a gate: while armed, every embed call waits inside until the test
    opens the gate, so the test can count how many searches are in the model at once."""

    def __init__(self, inner: SentenceTransformerEmbedder):
        self.inner = inner
        self.model_id = inner.model_id
        self.armed = False
        self.gate = threading.Event()
        self.inside = 0
        self.peak = 0
        self.batches: list[int] = []  # texts per model call while armed
        self.app: Any = None
        self._lock = threading.Lock()

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    @property
    def dim(self) -> int:
        return self.inner.dim

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.armed:
            with self._lock:
                self.inside += 1
                self.batches.append(len(texts))
                self.peak = max(self.peak, self.inside)
            try:
                self.gate.wait(60)
            finally:
                with self._lock:
                    self.inside -= 1
        return self.inner.embed(texts)


@pytest.fixture
def served(tmp_path: Path, embedder: SentenceTransformerEmbedder
           ) -> Iterator[tuple[str, GatedEmbedder]]:
    folder = tmp_path / "docs"
    folder.mkdir()
    write_docs(folder)
    gated = GatedEmbedder(embedder)
    engine = Engine(settings_for(tmp_path / "home", folder), embedder=gated)
    engine.sync("docs")
    gated.app = app = create_app(engine.settings, engine=engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", gated
    gated.gate.set()
    server.should_exit = True
    thread.join(10)
    engine.close()


def test_concurrent_searches_share_model_calls_and_the_loop_stays_responsive(
        served: tuple[str, GatedEmbedder]) -> None:
    """While one batch of queries is in the model, the others gather behind it and go in as
    the next: n searches, at most two model calls (freshrag/api/batch.py)."""
    url, gated = served
    n = 6
    batcher = gated.app.state.freshrag.batcher

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            gated.armed = True
            searches = [asyncio.create_task(client.post("/search", json={"query": q, "k": 2}))
                        for q in QUERIES[:n]]
            deadline = time.monotonic() + 30
            pings = 0
            # every query either in the (held) model call or queued for the next one
            while sum(gated.batches) + batcher.waiting < n:
                assert time.monotonic() < deadline, \
                    f"{sum(gated.batches)} in the model, {batcher.waiting} queued, of {n}"
                # While the searches wait on the model, the server still answers.
                assert (await client.get("/health")).status_code == 200
                pings += 1
                await asyncio.sleep(0.02)
            assert (await client.get("/status")).status_code == 200
            gated.gate.set()
            return list(await asyncio.gather(*searches))

    responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * n
    assert sum(gated.batches) == n and len(gated.batches) <= 2, gated.batches
    assert all(r.json()["hits"] for r in responses)


def test_many_concurrent_clients_all_answered(served: tuple[str, GatedEmbedder]) -> None:
    url, _ = served

    async def scenario() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            calls = [client.post("/search", json={"query": QUERIES[i % len(QUERIES)], "k": 3})
                     for i in range(48)]
            calls += [client.get("/search", params={"q": q}) for q in QUERIES]
            return list(await asyncio.gather(*calls))

    responses = asyncio.run(scenario())
    assert all(r.status_code == 200 for r in responses)
    # Same query, same answer, however many ran beside it.
    first = {r.json()["hits"][0]["doc_key"] for r in responses[:48:len(QUERIES)]}
    assert len(first) == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_freshrag_serve_sees_a_sync_made_by_another_process(
        tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    write_docs(folder)
    home = tmp_path / "home"
    config = tmp_path / "freshrag.toml"
    # the served process embeds queries with the writer's model (torch), as it must
    config.write_text(f'home = "{home}"\n[model]\nbackend = "torch"\n\n[[sources]]\n'
                      f'name = "docs"\ntype = "folder"\npath = "{folder}"\n')
    writer = Engine(settings_for(home, folder), embedder=embedder)  # "another process": us
    writer.sync("docs")
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FRESHRAG_API_MAX_WAIT_MS": "20000",
           "FRESHRAG_API_POLL_MS": "20"}
    env.pop("FRESHRAG_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "freshrag.cli", "serve", "--port", str(port),
                             "--config", str(config)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if client.get("/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
        before = client.post("/search", json={"query": "cafeteria", "k": 1}).json()
        assert "Pasta" in before["hits"][0]["text"]
        # Change a file; sync it here, in this process, a moment after the request is sent.
        (folder / "notes.txt").write_text("The cafeteria now serves sushi on Fridays.\n")
        timer = threading.Timer(0.5, writer.sync, args=("docs",))
        timer.start()
        res = client.post("/search", json={"query": "cafeteria", "k": 1, "max_lag_ms": 0})
        timer.join()
        assert res.status_code in (200, 503), res.text
        if res.status_code == 200:  # never the old text with a fresh watermark
            assert "sushi" in res.json()["hits"][0]["text"], res.json()
        after = client.post("/search", json={"query": "cafeteria", "k": 1}).json()
        assert "sushi" in after["hits"][0]["text"]  # the server's index handle saw the write
        doc = client.get("/documents/docs/notes.txt").json()
        assert "sushi" in doc["chunks"][0]["text"]
        status = client.get("/status").json()["sources"][0]
        assert status["documents"] == 4 and status["freshness"]["pending"] == 0
    finally:
        proc.terminate()
        proc.wait(10)
        writer.close()
