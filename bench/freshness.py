"""Freshness latency: a saved change until the API (or index) returns it, many trials."""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.api_load import free_port, wait_ready
from bench.common import alive, dist, folder_config, launch, stop, write
from freshrag.model import Mode

PG_ADMIN = os.environ.get("FRESHRAG_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PAGE = "# Status page\n\nThe current release codename is {token}.\n\nNothing else changed today.\n"


def until(check: Callable[[], bool], timeout: float = 30.0, every: float = 0.01) -> float:
    """Seconds until `check()` holds (raises after `timeout`)."""
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("change never became searchable")
        time.sleep(every)
    return time.perf_counter() - start


@contextmanager
def services(tmp: Path) -> Iterator[str]:
    """`freshrag watch` (local mode) and `freshrag serve` on a folder, as a user runs them."""
    docs = tmp / "docs"
    write(docs / "status.md", PAGE.format(token="initial"))
    config = folder_config(tmp, docs)
    port = free_port()
    watch = launch(config, "watch", "docs")
    serve = launch(config, "serve", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, serve)
        yield url
        alive(watch, "freshrag watch")  # it served every trial, not a leftover index
    finally:
        stop(watch, serve)


def file_trials(trials: int) -> dict[str, Any]:
    import httpx

    with tempfile.TemporaryDirectory() as t, services(Path(t)) as url:
        page = Path(t) / "docs" / "status.md"
        http = httpx.Client(timeout=10)

        def hits(token: str) -> list[dict[str, Any]]:
            r = http.post(url + "/search", json={"query": token, "mode": "keyword", "k": 3})
            return list(r.json()["hits"]) if r.status_code == 200 else []

        until(lambda: bool(hits("initial")), timeout=120)
        saves, deletes = [], []
        for n in range(trials):
            token = f"zq{uuid.uuid4().hex[:10]}"
            start = time.perf_counter()
            page.write_text(PAGE.format(token=token))
            until(lambda token=token: any(token in h["text"] for h in hits(token)))
            saves.append(time.perf_counter() - start)
            if n % 5 == 0:  # deletes are rarer: each one is followed by a re-create
                extra = Path(t) / "docs" / f"gone{n}.md"
                extra.write_text(PAGE.format(token=f"gone{n}x"))
                until(lambda n=n: bool(hits(f"gone{n}x")))
                start = time.perf_counter()
                extra.unlink()
                until(lambda n=n: not hits(f"gone{n}x"))
                deletes.append(time.perf_counter() - start)
        http.close()
    return {"freshness_file_s": dist(saves), "freshness_delete_s": dist(deletes)}


def pg_trials(trials: int, notify: bool, embedder: Any) -> dict[str, Any]:
    import sqlalchemy as sa

    from connectors import pg_notify
    from freshrag.config import SourceConfig, load_settings
    from freshrag.engine import Engine

    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"freshrag_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    db = sa.create_engine(url)
    stop = threading.Event()
    try:
        with db.begin() as c:
            c.execute(sa.text("CREATE TABLE tickets (id int PRIMARY KEY, title text, body text, "
                              "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"))
            for i in range(50):
                c.execute(sa.text("INSERT INTO tickets (id, title, body) VALUES (:i, :t, :b)"),
                          {"i": i, "t": f"Ticket {i}", "b": f"Printer {i} is out of toner."})
        with tempfile.TemporaryDirectory() as t:
            settings = load_settings(config=None, home=Path(t) / "home")
            source = SourceConfig(name="tickets", type="sql", url=url, table="tickets",
                                  key=["id"], text="{title}\n\n{body}", cursor="updated_at",
                                  notify=notify, poll_interval=1.0)
            settings.sources = [source]
            engine = Engine(settings, embedder=embedder)
            engine.sync("tickets")
            keys: queue.Queue[list[str] | None] = queue.Queue()
            ready = threading.Event()

            def apply() -> None:  # one thread owns the source, as the watcher does
                while not stop.is_set():
                    try:
                        batch = keys.get(timeout=1.0 if not notify else 0.2)
                    except queue.Empty:
                        batch = None
                        if not notify:
                            engine.sync("tickets")  # the cursor poll, every poll_interval
                        continue
                    if batch:
                        engine.sync("tickets", keys=batch)

            worker = threading.Thread(target=apply, daemon=True)
            worker.start()
            if notify:
                threading.Thread(target=pg_notify.listen, args=(source, keys.put, stop),
                                 kwargs={"ready": ready, "echo": None}, daemon=True).start()
                ready.wait(30)
            samples = []
            for n in range(trials):
                token = f"zq{uuid.uuid4().hex[:10]}"
                start = time.perf_counter()
                with db.begin() as c:
                    c.execute(sa.text("UPDATE tickets SET body = :b, updated_at = "
                                      "clock_timestamp() WHERE id = :i"),
                              {"b": f"Escalated: {token}", "i": n % 50})
                until(lambda token=token: any(token in h.text for h in engine.index.search(
                    token, None, 1, Mode.keyword)))
                samples.append(time.perf_counter() - start)
            stop.set()
            worker.join(10)
            engine.close()
    finally:
        stop.set()
        db.dispose()
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return dist(samples)


def run(trials: int, embedder: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        out.update(file_trials(trials))
    except Exception as exc:  # reported in the JSON, the other figures still run
        out["freshness_file_s"] = {"error": f"{type(exc).__name__}: {exc}"}
    if embedder is None:
        from freshrag.embed import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder()
    for key, notify in (("freshness_pg_notify_s", True), ("freshness_pg_poll_s", False)):
        try:
            out[key] = pg_trials(trials, notify, embedder)
        except Exception as exc:
            out[key] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
