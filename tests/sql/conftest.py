"""Fixtures for the SQL source tests: a fresh schema/database per test on each real server."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from freshrag.config import SourceConfig, load_settings
from freshrag.engine import Engine

PG_ADMIN = os.environ.get("FRESHRAG_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MY_ADMIN = os.environ.get("FRESHRAG_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")
T0 = datetime(2024, 1, 1, 12, 0, 0)
TS_TYPE = {"postgres": "TIMESTAMP(6)", "mariadb": "DATETIME(6)", "sqlite": "TIMESTAMP"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def unreachable(what: str, exc: Exception) -> None:
    msg = f"{what} is not reachable: {str(exc).splitlines()[0]}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + " (CI=true: the real servers are required)")
    pytest.skip(msg)


class FakeEmbedder:
    """Deterministic bag-of-words vectors: a query shares words with its documents."""

    model_id = "fake-bow-64"
    max_tokens = 256
    dim = 64

    def __init__(self) -> None:
        self.calls = 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += len(texts)
        out = []
        for text in texts:
            v = [0.0] * self.dim
            for word in text.lower().split():
                v[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            norm = sum(x * x for x in v) ** 0.5 or 1.0
            out.append([x / norm for x in v])
        return out


@dataclass
class Db:
    kind: str  # postgres, mariadb, sqlite
    url: str  # what the source connects with
    table: str  # as the source names it
    admin: sa.Engine  # autocommit, for the test's own changes

    def exec(self, sql: str, **params: Any) -> Any:
        with self.admin.connect() as conn:
            return conn.execute(sa.text(sql.replace("{t}", self.table)), params)

    def create_tickets(self) -> None:
        self.exec(f"CREATE TABLE {{t}} (id INTEGER PRIMARY KEY, title VARCHAR(200), body TEXT, "
                  f"status VARCHAR(20), updated_at {TS_TYPE[self.kind]} NULL, "
                  f"deleted BOOLEAN DEFAULT FALSE)")

    def insert(self, id: int, title: str, body: str, status: str = "open",
               t: float = 0.0, conn: Any = None) -> None:
        sql = sa.text(f"INSERT INTO {self.table} (id, title, body, status, updated_at, deleted) "
                      "VALUES (:id, :title, :body, :status, :ts, :d)")
        params = dict(id=id, title=title, body=body, status=status, ts=at(t), d=False)
        if conn is not None:
            conn.execute(sql, params)
        else:
            with self.admin.connect() as c:
                c.execute(sql, params)

    def kill(self, conn: sa.Connection) -> None:
        """Terminate the server session behind `conn` (as an admin would)."""
        if self.kind == "postgres":
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            self.exec("SELECT pg_terminate_backend(:pid, 5000)", pid=pid)
        elif self.kind == "mariadb":
            cid = conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar()
            self.exec(f"KILL CONNECTION {int(cid)}")
        else:
            import sqlite3

            raise sa.exc.OperationalError("SELECT", {}, sqlite3.OperationalError("disk I/O error"))


def _postgres() -> Iterator[Db]:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        unreachable("PostgreSQL at " + PG_ADMIN, exc)
    schema = f"fr_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield Db("postgres", PG_ADMIN, f"{schema}.tickets", admin)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def _mariadb() -> Iterator[Db]:
    admin = sa.create_engine(MY_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        unreachable("MariaDB/MySQL at " + MY_ADMIN, exc)
    name = f"fr_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sa.make_url(MY_ADMIN).set(database=name)
    db_admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        yield Db("mariadb", url.render_as_string(hide_password=False), "tickets", db_admin)
    finally:
        db_admin.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name}")
        admin.dispose()


def _sqlite(tmp: Path) -> Iterator[Db]:
    url = f"sqlite:///{tmp / 'data.db'}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        yield Db("sqlite", url, "tickets", admin)
    finally:
        admin.dispose()


def make_db(kind: str, tmp: Path) -> Iterator[Db]:
    return {"postgres": _postgres, "mariadb": _mariadb}[kind]() if kind != "sqlite" \
        else _sqlite(tmp)


@pytest.fixture(params=["postgres", "mariadb", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    yield from make_db(request.param, tmp_path)


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Db]:
    yield from _postgres()


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Db]:
    yield from _sqlite(tmp_path)


def source_config(db: Db, **overrides: Any) -> SourceConfig:
    opts: dict[str, Any] = dict(url=db.url, table=db.table, key="id",
                                text="{title}\n\n{body}", metadata=["status"],
                                cursor="updated_at", deleted="deleted", reconcile_every=0)
    opts.update(overrides)
    return SourceConfig(name="tickets", type="sql", **opts)


def make_engine(tmp: Path, db: Db, embedder: Any = None, **overrides: Any) -> Engine:
    settings = load_settings(config=None, home=tmp / "home")
    settings.sources = [source_config(db, **overrides)]
    return Engine(settings, embedder=embedder or FakeEmbedder())


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    engines: list[Engine] = []

    def build(db: Db, embedder: Any = None, **overrides: Any) -> Engine:
        engine = make_engine(tmp_path, db, embedder, **overrides)
        engines.append(engine)
        return engine
    yield build
    for engine in engines:
        src = engine._sources.get("tickets")
        if src is not None:
            src.close()  # type: ignore[attr-defined]
        engine.close()


def docs(engine: Engine) -> dict[str, str]:
    """doc_key -> indexed text of the tickets source."""
    out = {}
    for key in engine.index.documents("tickets"):
        out[key] = "\n".join(h.text for h in engine.index.get_document("tickets", key))
    return out
