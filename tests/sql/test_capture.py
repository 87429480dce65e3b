"""Change capture per engine (connectors.capture and its readers) on real servers, and the
reconcile's per-range key hash."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors import capture
from connectors.binlog import BinlogReader, load_state, save_state
from connectors.changelog import ChangelogReader
from connectors.pg_logical import LogicalReader
from connectors.sql_options import parse_options
from connectors.sql_reconcile import reconcile
from freshrag.config import ConfigError, SourceConfig
from tests.capture_servers import binlog_mariadb, fresh_database, logical_postgres
from tests.sql.conftest import Db

__all__ = ["binlog_mariadb", "logical_postgres"]  # session fixtures used here


def cfg(url: str, table: str = "notes", **extra: Any) -> SourceConfig:
    return SourceConfig(name="notes", type="sql", url=url, table=table, key="id",
                        text="{body}", cursor="updated_at", **extra)


def collect(reader: Any, want: Callable[[set[str]], bool], limit: float = 30
            ) -> tuple[set[str], list[Any]]:
    """Poll until the keys seen so far satisfy `want`; returns them and the positions."""
    keys: set[str] = set()
    positions: list[Any] = []
    deadline = time.monotonic() + limit
    while not want(keys):
        assert time.monotonic() < deadline, f"only saw {sorted(keys)}"
        for pos, got in reader.poll():
            keys.update(got)
            positions.append(pos)
    return keys, positions


# --- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "mode", "message"), [
    ("sqlite:///x.db", "binlog", "'binlog' is not supported on sqlite (it needs MySQL or "
                                 "MariaDB)"),
    ("sqlite:///x.db", "logical", "'logical' is not supported on sqlite (it needs Postgres)"),
    ("mysql+pymysql://root@h/db", "notify", "'notify' is not supported on mysql"),
    ("postgresql+psycopg://u@h/db", "binlog", "'binlog' is not supported on postgresql"),
])
def test_a_mode_the_engine_cannot_do_is_one_line_naming_the_key(url: str, mode: str,
                                                                message: str) -> None:
    with pytest.raises(ConfigError, match=r"^sources\.notes\.capture: ") as err:
        parse_options(cfg(url, capture=mode))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_notify_true_is_capture_notify_and_conflicts_are_named() -> None:
    url = "postgresql+psycopg://u@h/db"
    assert capture.mode_of(cfg(url, notify=True)) == "notify"
    assert capture.mode_of(cfg(url, capture="notify")) == "notify"
    assert capture.mode_of(cfg(url)) == "poll"
    with pytest.raises(ConfigError, match=r"^sources\.notes\.capture: 'logical' conflicts"):
        parse_options(cfg(url, notify=True, capture="logical"))
    with pytest.raises(ConfigError, match=r"^sources\.notes\.capture: needs `table`"):
        parse_options(SourceConfig(name="notes", type="sql", url=url, query="SELECT 1 AS id",
                                   key="id", text="{id}", cursor="id", capture="changelog"))
    with pytest.raises(ConfigError, match=r"^sources\.notes\.capture: Input should be"):
        parse_options(cfg(url, capture="wal"))


# --- reconcile: counts and key hashes per range -------------------------------------------------

def test_reconcile_of_text_keys_finds_a_delete_and_a_missed_insert_in_one_range(
        db: Db, make: Any) -> None:
    db.exec("CREATE TABLE {t} (id VARCHAR(40) PRIMARY KEY, title VARCHAR(200), body TEXT, "
            "status VARCHAR(20), updated_at INTEGER, deleted INTEGER DEFAULT 0)")
    keys = [f"k{i:04d}" for i in range(0, 1200, 2)]  # 600 keys: the walk counts ranges
    with db.admin.connect() as conn:
        conn.execute(sa.text(f"INSERT INTO {db.table} (id, title, body, status, updated_at) "
                             "VALUES (:id, 't', 'b', 'open', 1)"), [{"id": k} for k in keys])
    engine = make(db)
    src = engine.source("tickets")
    src.resolve()
    assert reconcile(src, keys) == ([], [], 1)  # one query: the database's hashes match ours
    # one range (16 of them, ~38 keys each) loses k0100 and gains k0101: same count
    db.exec("DELETE FROM {t} WHERE id = 'k0100'")
    db.exec("INSERT INTO {t} (id, title, body, status, updated_at) VALUES ('k0101', 't', 'b', "
            "'open', 1)")
    gone, extra, _ = reconcile(src, keys)
    assert (gone, extra) == (["k0100"], ["k0101"])


# --- changelog: every engine ----------------------------------------------------------------------

def test_changelog_triggers_record_every_change_and_trim_after_commit(db: Db, tmp_path: Path
                                                                      ) -> None:
    db.create_tickets()
    db.insert(1, "One", "first")
    db.insert(2, "Two", "second")
    config = SourceConfig(name="tickets", type="sql", url=db.url, table=db.table, key="id",
                          text="{body}", cursor="updated_at", capture="changelog")
    p = capture.install(config, echo=None)
    assert capture.ensure(config) is False  # in place, as this config would create it
    reader = ChangelogReader(config)
    try:
        reader.open()
        assert reader.poll() == []
        db.exec("UPDATE {t} SET body = 'changed' WHERE id = 1")
        db.exec("DELETE FROM {t} WHERE id = 2")  # a hard delete
        db.insert(3, "Three", "third")
        keys, positions = collect(reader, lambda k: k >= {"1", "2", "3"})
        assert keys == {"1", "2", "3"}
        # a restart before the commit re-reads the same rows: at least once
        reader.open()
        again, _ = collect(reader, lambda k: k >= {"1", "2", "3"})
        assert again == {"1", "2", "3"}
        reader.commit(positions)
        with reader.engine.connect() as conn:
            left = conn.execute(sa.text(f"SELECT count(*) FROM {p.changelog}")).scalar()
        assert left == 0
    finally:
        reader.close()
    capture.uninstall(config, echo=None)
    assert not capture.installed(config)
    db.exec("UPDATE {t} SET body = 'after uninstall' WHERE id = 1")  # no trigger left


# --- binlog: a MariaDB of our own with ROW binlog ---------------------------------------------

@pytest.fixture
def binlog_db(binlog_mariadb: str) -> Iterator[str]:
    yield from fresh_database(binlog_mariadb)


def _exec(url: str, *sql: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for stmt in sql:
                conn.exec_driver_sql(stmt)
    finally:
        engine.dispose()


def test_binlog_reader_resumes_from_the_committed_position_after_a_restart(
        binlog_db: str, tmp_path: Path) -> None:
    _exec(binlog_db, "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT, updated_at INT)",
          "CREATE TABLE other (id INT PRIMARY KEY)",
          "INSERT INTO notes VALUES (1, 'a', 1), (2, 'b', 1)")
    config = cfg(binlog_db, capture="binlog")
    capture.install(config, echo=None)  # checks log_bin and binlog_format
    reader = BinlogReader(config, tmp_path)
    reader.open()
    try:
        _exec(binlog_db, "UPDATE notes SET body = 'c' WHERE id = 1",
              "INSERT INTO other VALUES (9)", "DELETE FROM notes WHERE id = 2")
        keys, positions = collect(reader, lambda k: k >= {"1", "2"})
        assert keys == {"1", "2"}
        reader.commit(positions[:1])  # only the UPDATE's transaction is indexed
    finally:
        reader.close()
    # changes while the consumer is down
    _exec(binlog_db, "INSERT INTO notes VALUES (3, 'd', 1)", "UPDATE notes SET body = 'e' "
          "WHERE id = 3")
    reader = BinlogReader(config, tmp_path)
    reader.open()
    try:
        assert not reader.gap
        keys, _ = collect(reader, lambda k: k >= {"2", "3"})
        assert keys == {"2", "3"}  # the uncommitted DELETE again, and what came meanwhile
    finally:
        reader.close()


def test_a_purged_binlog_position_is_a_counted_gap_not_a_silent_miss(
        binlog_db: str, tmp_path: Path) -> None:
    _exec(binlog_db, "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT, updated_at INT)")
    config = cfg(binlog_db, capture="binlog")
    save_state(config, tmp_path, {"file": "binlog.999999", "pos": 4})
    reader = BinlogReader(config, tmp_path)
    reader.open()
    try:
        assert reader.gap
        assert load_state(config, tmp_path)["purged"] == 1
        _exec(binlog_db, "INSERT INTO notes VALUES (1, 'a', 1)")
        keys, _ = collect(reader, lambda k: "1" in k)
        assert keys == {"1"}
    finally:
        reader.close()


def test_binlog_on_a_server_without_a_row_binlog_is_a_config_error(
        binlog_db: str) -> None:
    _exec(binlog_db, "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT, updated_at INT)",
          "SET GLOBAL binlog_format = 'STATEMENT'")
    try:
        with pytest.raises(ConfigError, match=r"^sources\.notes\.capture: 'binlog' needs "
                                              r"binlog_format = ROW"):
            capture.ensure(cfg(binlog_db, capture="binlog"))
    finally:
        _exec(binlog_db, "SET GLOBAL binlog_format = 'ROW'")


# --- logical: a Postgres cluster of our own with wal_level = logical --------------------------

@pytest.fixture
def logical_db(logical_postgres: str) -> Iterator[str]:
    yield from fresh_database(logical_postgres)


def test_logical_slot_delivers_committed_changes_at_least_once_and_drops_in_one_call(
        logical_db: str) -> None:
    _exec(logical_db, "CREATE TABLE notes (id int PRIMARY KEY, body text, updated_at int)",
          "CREATE TABLE other (id int PRIMARY KEY)", "INSERT INTO notes VALUES (1, 'a', 1), "
          "(2, 'it''s', 1)")
    config = cfg(logical_db, capture="logical")
    assert capture.ensure(config) is True
    assert capture.ensure(config) is False
    reader = LogicalReader(config)
    try:
        reader.open()
        _exec(logical_db, "UPDATE notes SET id = 5 WHERE id = 1", "INSERT INTO other VALUES (1)",
              "DELETE FROM notes WHERE id = 2")
        keys, positions = collect(reader, lambda k: k >= {"1", "5", "2"})
        assert keys == {"1", "5", "2"}  # a key change is a delete of the old key too
        reader.commit([p for p in positions[:1]])
        reader.open()  # a restart: the uncommitted DELETE again, the committed UPDATE not
        again, _ = collect(reader, lambda k: "2" in k)
        assert again == {"2"}
    finally:
        reader.close()
    capture.uninstall(config, echo=None)
    engine = sa.create_engine(logical_db)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM pg_replication_slots").scalar() == 0
    engine.dispose()


def test_logical_on_a_server_without_wal_level_logical_is_a_config_error(pg: Db) -> None:
    pg.create_tickets()
    config = SourceConfig(name="notes", type="sql", url=pg.url, table=pg.table, key="id",
                          text="{body}", cursor="updated_at", capture="logical")
    with pytest.raises(ConfigError, match=r"^sources\.notes\.capture: 'logical' needs "
                                          r"wal_level = logical .* has wal_level = replica"):
        capture.ensure(config)


# --- the watcher's side: queued keys survive a rescan; positions wait for the index write ------

def test_a_rescan_does_not_swallow_keys_queued_with_it() -> None:
    from flows.batching import Coalescer

    c = Coalescer(quiet=0.01, max_delay=0.02)
    c.add("s", ["gone-row"])  # a hard delete from a stream: a spaced rescan would not see it
    c.rescan("s")
    c.add("s", ["later"])
    first, second = c.take(timeout=1), c.take(timeout=1)
    assert first is not None and first.keys is None
    assert second is not None and second.keys == ["gone-row", "later"]


def test_changelog_rows_are_trimmed_only_after_the_covering_index_write(lite: Db,
                                                                        make: Any) -> None:
    from flows.batching import Coalescer
    from flows.capture_feeds import StreamFeed

    lite.create_tickets()
    lite.insert(1, "One", "first")
    lite.insert(2, "Two", "second")
    engine = make(lite, capture="changelog")
    engine.sync("tickets")
    src = engine.source("tickets")
    coalescer = Coalescer(quiet=0.01, max_delay=0.05)
    feed = StreamFeed(src.config, coalescer, src)
    feed.prepare()
    feed.start()
    try:
        assert feed.listening.wait(10)
        lite.exec("DELETE FROM {t} WHERE id = 2")
        batch = coalescer.take(timeout=10)
        assert batch is not None and batch.keys == ["2"]

        def backlog() -> int:
            with sa.create_engine(lite.url).connect() as conn:
                return int(conn.exec_driver_sql(
                    "SELECT count(*) FROM freshrag_changelog_tickets").scalar_one())
        feed.tick()
        time.sleep(0.3)
        assert backlog() == 1  # not indexed yet: kept
        report = engine.sync("tickets", batch.keys, observed_at=batch.cut)
        assert report.deleted == 1
        deadline = time.monotonic() + 10
        while backlog():
            feed.tick()
            assert time.monotonic() < deadline, "the changelog was never trimmed"
            time.sleep(0.05)
        assert feed.committed == 1
    finally:
        feed.stop()
