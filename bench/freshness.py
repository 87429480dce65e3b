"""Freshness latency: a saved file or a committed row until `/search` of a running `freshrag
serve` returns it, with `freshrag watch` following the source: only the product's commands."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.api_load import free_port, wait_ready
from bench.common import dist, write

PG_ADMIN = os.environ.get("FRESHRAG_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# the console script beside this interpreter, as README installs it
FRESHRAG = [str(Path(sys.executable).parent / "freshrag")]
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
def services(tmp: Path, config: str, watch_args: tuple[str, ...] = (),
             ready_headers: dict[str, str] | None = None) -> Iterator[str]:
    """`freshrag watch` (local mode) and `freshrag serve` started as commands on a config file,
    as a user runs them; yields the API's URL once it is ready (`ready_headers`: a client's
    key, when the config has API clients)."""
    cfg = tmp / "freshrag.toml"
    cfg.write_text(f'home = "{tmp / "home"}"\n' + config)
    env = {**os.environ, "FRESHRAG_CONFIG": str(cfg), "PREFECT_HOME": str(tmp / "prefect")}
    port = free_port()
    logs = [(tmp / name).open("wb") for name in ("watch.log", "serve.log")]
    watch = subprocess.Popen([*FRESHRAG, "watch", *watch_args], cwd=tmp, env=env,
                             stdout=logs[0], stderr=subprocess.STDOUT)
    serve = subprocess.Popen([*FRESHRAG, "serve", "--port", str(port)], cwd=tmp, env=env,
                             stdout=logs[1], stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, serve, headers=ready_headers)
        yield url
    except Exception as exc:
        tail = (tmp / "watch.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{exc}; watch log: {tail}") from exc
    finally:
        for proc in (watch, serve):
            proc.terminate()
        for proc in (watch, serve):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()


def folder_config(docs: Path) -> str:
    return f'[[sources]]\nname = "docs"\ntype = "folder"\npath = "{docs}"\n'


class Search:
    """Keyword `POST /search` of the running API: which hits hold a token."""

    def __init__(self, url: str, source: str):
        import httpx

        self.url, self.source, self.http = url, source, httpx.Client(timeout=10)

    def hits(self, token: str) -> list[dict[str, Any]]:
        r = self.http.post(self.url + "/search", json={
            "query": token, "mode": "keyword", "k": 3, "filters": {"source": self.source}})
        return [h for h in r.json()["hits"] if token in h["text"]] if r.status_code == 200 \
            else []


def file_trials(trials: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as t:
        docs = Path(t) / "docs"
        write(docs / "status.md", PAGE.format(token="initial"))
        with services(Path(t), folder_config(docs)) as url:
            return _file_trials(trials, Path(t), url)


def _file_trials(trials: int, t: Path, url: str) -> dict[str, Any]:
    page = t / "docs" / "status.md"
    search = Search(url, "docs")
    until(lambda: bool(search.hits("initial")), timeout=120)
    saves, deletes = [], []
    for n in range(trials):
        token = f"zq{uuid.uuid4().hex[:10]}"
        start = time.perf_counter()
        page.write_text(PAGE.format(token=token))
        until(lambda token=token: bool(search.hits(token)))
        saves.append(time.perf_counter() - start)
        if n % 5 == 0:  # deletes are rarer: each one is followed by a re-create
            extra = t / "docs" / f"gone{n}.md"
            extra.write_text(PAGE.format(token=f"gone{n}x"))
            until(lambda n=n: bool(search.hits(f"gone{n}x")))
            start = time.perf_counter()
            extra.unlink()
            until(lambda n=n: not search.hits(f"gone{n}x"))
            deletes.append(time.perf_counter() - start)
    return {"freshness_file_s": dist(saves), "freshness_delete_s": dist(deletes)}


def table_config(url: str, notify: bool) -> str:
    """A Postgres table source as README configures one: LISTEN/NOTIFY, or a 1 s poll only."""
    return (f'[[sources]]\nname = "tickets"\ntype = "sql"\nurl = "{url}"\ntable = "tickets"\n'
            'key = "id"\ntext = "{title}\\n\\n{body}"\ncursor = "updated_at"\n'
            + ("notify = true\n" if notify else "poll_interval = 1\n"))


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh Postgres database with a 50-row `tickets` table; dropped afterwards."""
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"freshrag_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        db = sa.create_engine(url)
        with db.begin() as c:
            c.execute(sa.text("CREATE TABLE tickets (id int PRIMARY KEY, title text, body text, "
                              "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"))
            for i in range(50):
                c.execute(sa.text("INSERT INTO tickets (id, title, body) VALUES (:i, :t, :b)"),
                          {"i": i, "t": f"Ticket {i}", "b": f"Printer {i} is out of toner."})
        db.dispose()
        yield url
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def timed_update(c: Any, search: Search, n: int, now_sql: str) -> float:
    """Seconds from an UPDATE of row `n % 50` to `/search` returning its new text."""
    import sqlalchemy as sa

    token = f"zq{uuid.uuid4().hex[:10]}"
    start = time.perf_counter()
    c.execute(sa.text(f"UPDATE tickets SET body = :b, updated_at = {now_sql} WHERE id = :i"),
              {"b": f"Escalated: {token}", "i": n % 50})
    until(lambda: bool(search.hits(token)))
    return time.perf_counter() - start


def timed_delete(c: Any, search: Search, n: int, insert_sql: str) -> float:
    """Insert a fresh row, wait until it is searchable, then seconds from its hard DELETE to
    `/search` no longer returning it."""
    import sqlalchemy as sa

    gone = f"gone{uuid.uuid4().hex[:10]}"
    c.execute(sa.text(insert_sql), {"i": 1000 + n, "b": gone})
    until(lambda: bool(search.hits(gone)))
    start = time.perf_counter()
    c.execute(sa.text("DELETE FROM tickets WHERE id = :i"), {"i": 1000 + n})
    until(lambda: not search.hits(gone))
    return time.perf_counter() - start


def pg_trials(trials: int, notify: bool) -> dict[str, Any]:
    """UPDATE (and, with notify, hard DELETE) of a row until `/search` of a running
    `freshrag serve` shows it, with `freshrag watch` following the table."""
    import sqlalchemy as sa

    with pg_database() as url, tempfile.TemporaryDirectory() as t, \
            services(Path(t), table_config(url, notify)) as api:
        db = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        search = Search(api, "tickets")
        until(lambda: bool(search.hits("toner")), timeout=120)
        if notify:  # the watcher installs the trigger on start; wait until it listens
            until(lambda: "listening for notifications" in (Path(t) / "watch.log").read_text(),
                  timeout=60)
        updates, deletes = [], []
        with db.connect() as c:
            for n in range(trials):
                updates.append(timed_update(c, search, n, "clock_timestamp()"))
                if notify and n % 5 == 0:  # a hard delete of a fresh row: no cursor sees it
                    deletes.append(timed_delete(
                        c, search, n, "INSERT INTO tickets (id, title, body) VALUES "
                        "(:i, 'Extra', :b)"))
        db.dispose()
    if not notify:
        return {"freshness_pg_poll_s": dist(updates)}
    return {"freshness_pg_notify_s": dist(updates), "freshness_pg_delete_s": dist(deletes)}


CAPTURE_TS = {"binlog": "DATETIME(6)", "changelog": "TIMESTAMP", "logical": "timestamptz"}


@contextmanager
def capture_database(mode: str, tmp: Path) -> Iterator[str]:
    """A 50-row `tickets` table where `capture = mode` can run: a MariaDB with a ROW binlog or
    a Postgres with wal_level = logical started for the bench (tests/capture_servers.py), or a
    SQLite file; yields the source URL."""
    import sqlalchemy as sa

    from tests.capture_servers import binlog_server, fresh_database, logical_server

    def seed(url: str) -> None:
        db = sa.create_engine(url)
        with db.begin() as c:
            c.execute(sa.text(f"CREATE TABLE tickets (id int PRIMARY KEY, title varchar(100), "
                              f"body text, updated_at {CAPTURE_TS[mode]} NOT NULL)"))
            for i in range(50):
                c.execute(sa.text("INSERT INTO tickets VALUES (:i, :t, :b, CURRENT_TIMESTAMP)"),
                          {"i": i, "t": f"Ticket {i}", "b": f"Printer {i} is out of toner."})
        db.dispose()
    if mode == "changelog":
        url = f"sqlite:///{tmp / 'app.db'}"
        seed(url)
        yield url
        return
    with (binlog_server if mode == "binlog" else logical_server)() as admin:
        databases = fresh_database(admin)
        url = next(databases)
        try:
            seed(url)
            yield url
        finally:
            databases.close()


def capture_trials(trials: int, mode: str) -> dict[str, Any]:
    """UPDATE → searchable and hard DELETE → gone for a `capture = mode` table (poll_interval =
    3600, so only the change stream brings them), through `freshrag watch` + `freshrag serve`."""
    import sqlalchemy as sa

    with tempfile.TemporaryDirectory() as t, capture_database(mode, Path(t)) as url:
        config = (f'[[sources]]\nname = "tickets"\ntype = "sql"\nurl = "{url}"\n'
                  'table = "tickets"\nkey = "id"\ntext = "{title}\\n\\n{body}"\n'
                  f'cursor = "updated_at"\ncapture = "{mode}"\npoll_interval = 3600\n')
        # --record off: the watcher as README runs it without a Prefect server (the hot path
        # is the same; recording is issue 11's concern and its ephemeral server the slow part)
        with services(Path(t), config, ("--record", "off")) as api:
            db = sa.create_engine(url, isolation_level="AUTOCOMMIT")
            search = Search(api, "tickets")
            until(lambda: bool(search.hits("toner")), timeout=180)
            until(lambda: f"following {mode} changes" in (Path(t) / "watch.log").read_text(),
                  timeout=60)
            updates, deletes = [], []
            with db.connect() as c:
                for n in range(trials):
                    updates.append(timed_update(c, search, n, "CURRENT_TIMESTAMP"))
                    deletes.append(timed_delete(
                        c, search, n, "INSERT INTO tickets VALUES (:i, 'Extra', :b, "
                        "CURRENT_TIMESTAMP)"))
            db.dispose()
    return {f"freshness_{mode}_update_s": dist(updates),
            f"freshness_{mode}_delete_s": dist(deletes)}


def capture_run(trials: int, modes: tuple[str, ...] = ("binlog", "changelog", "logical")
                ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in modes:
        try:
            out.update(capture_trials(trials, mode))
        except Exception as exc:  # reported in the JSON, the other figures still run
            out.update({f"freshness_{mode}_{k}_s": {"error": f"{type(exc).__name__}: {exc}"}
                        for k in ("update", "delete")})
    return out


def run(trials: int, embedder: Any = None) -> dict[str, Any]:
    """Every figure through the product's commands (`freshrag watch` + `freshrag serve`); the
    embedder argument is unused (each command loads its own model, as a user's does)."""
    out: dict[str, Any] = {}
    try:
        out.update(file_trials(trials))
    except Exception as exc:  # reported in the JSON, the other figures still run
        out["freshness_file_s"] = {"error": f"{type(exc).__name__}: {exc}"}
    for keys, notify in ((("freshness_pg_notify_s", "freshness_pg_delete_s"), True),
                         (("freshness_pg_poll_s",), False)):
        try:
            out.update(pg_trials(trials, notify))
        except Exception as exc:
            out.update({k: {"error": f"{type(exc).__name__}: {exc}"} for k in keys})
    out.update(capture_run(trials))
    return out
