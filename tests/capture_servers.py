"""Servers the capture tests start themselves (the machine's are not set up for it): a MariaDB
with a ROW binlog and a Postgres cluster with wal_level = logical, in temp dirs on free loopback
ports, started once per session and stopped at its end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest
import sqlalchemy as sa


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Unavailable(RuntimeError):
    """The server binaries are missing or would not start."""


def _missing(what: str) -> NoReturn:
    raise Unavailable(what)


def _fixture(server: Any) -> Iterator[str]:
    try:
        cm = server()
        url = cm.__enter__()
    except Unavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{exc} (CI=true: the capture servers are required)")
        pytest.skip(str(exc))
    try:
        yield url
    finally:
        cm.__exit__(None, None, None)


def _as(user: str) -> list[str]:
    """Run a server binary as `user` when we are root (initdb and mariadbd refuse root)."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    return [runuser, "-u", user, "--"] if runuser else []


def _wait(url: str, what: str, log: Path, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
                return
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{what} did not start:\n"
                                         + log.read_text(errors="replace")[-3000:]) from None
                time.sleep(0.2)
    finally:
        engine.dispose()


def _tempdir(owner: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"freshrag-{owner}-"))
    if os.geteuid() == 0:
        shutil.chown(root, owner)
    return root


@pytest.fixture(scope="session")
def binlog_mariadb() -> Iterator[str]:
    """An admin URL (root, no password) of a MariaDB writing a ROW binlog."""
    yield from _fixture(binlog_server)


@pytest.fixture(scope="session")
def logical_postgres() -> Iterator[str]:
    """An admin URL (postgres, trust) of a Postgres cluster with wal_level = logical."""
    yield from _fixture(logical_server)


@contextmanager
def binlog_server() -> Iterator[str]:
    """A MariaDB writing a ROW binlog, in a temp dir on a free port; its admin URL."""
    install, server = shutil.which("mariadb-install-db"), shutil.which("mariadbd") or \
        (shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin"))
    if not install or not server:
        _missing("mariadb-install-db / mariadbd are not installed")
    root = _tempdir("mysql")
    data, port = root / "data", _free_port()
    done = subprocess.run([install, "--no-defaults", f"--datadir={data}", "--user=mysql",
                           "--auth-root-authentication-method=normal", "--skip-test-db"],
                          capture_output=True, text=True, timeout=300)
    if done.returncode:
        _missing(f"mariadb-install-db failed: {done.stderr[-500:]}")
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*_as("mysql"), server, "--no-defaults", f"--datadir={data}",
                                 f"--socket={root / 'sock'}", f"--port={port}",
                                 "--bind-address=127.0.0.1", f"--log-bin={data / 'binlog'}",
                                 "--binlog-format=ROW", "--server-id=1",
                                 "--innodb-buffer-pool-size=32M", "--skip-name-resolve"],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"mysql+pymysql://root@127.0.0.1:{port}/mysql"
    try:
        _wait(url, "MariaDB with binlog", log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def logical_server() -> Iterator[str]:
    """A Postgres cluster with wal_level = logical, in a temp dir on a free port; its URL."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        _missing("initdb / pg_ctl are not installed")
    root = _tempdir("postgres")
    data, port = root / "data", _free_port()
    as_pg = _as("postgres")
    done = subprocess.run([*as_pg, initdb, "-D", str(data), "-A", "trust", "-U", "postgres",
                           "--no-sync", "-E", "UTF8"], capture_output=True, text=True,
                          timeout=300)
    if done.returncode:
        _missing(f"initdb failed: {done.stderr[-500:]}")
    log = root / "server.log"
    opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c wal_level=logical "
            "-c fsync=off -c max_replication_slots=20 -c shared_buffers=32MB")
    done = subprocess.run([*as_pg, pg_ctl, "-D", str(data), "-o", opts, "-l", str(log), "-w",
                           "start"], capture_output=True, text=True, timeout=120)
    if done.returncode:
        _missing(f"pg_ctl start failed: {done.stderr[-500:]}")
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    try:
        _wait(url, "Postgres with wal_level=logical", log)
        yield url
    finally:
        subprocess.run([*as_pg, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(admin_url: str) -> Iterator[str]:
    """A new database on one of these servers, dropped after (slots in it first)."""
    name = f"fr_cap_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if admin.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_drop_replication_slot(slot_name) FROM "
                                     f"pg_replication_slots WHERE database = '{name}'")
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()
