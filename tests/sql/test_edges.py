"""The SQL source's edges: bad rows, composite keys, queries, dropped tables, config, reconcile."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa

from connectors import SourceError
from freshrag.config import ConfigError
from tests.sql.conftest import Db, at, docs
from tests.sql.test_sync import seed


def test_bad_rows_are_reported_with_their_key_and_the_rest_go_on(db: Db, make: Any) -> None:
    seed(db, 3)
    db.exec("INSERT INTO {t} (id, title, body, status, updated_at) "
            "VALUES (4, NULL, NULL, 'open', :ts)", ts=at(4))
    db.insert(5, "Huge", "word " * 400, t=5)
    bad = {"4": "no text: title, body are NULL", "5": "over the 1 KB limit"}
    if db.kind == "sqlite":  # SQLite stores whatever bytes it is given as TEXT
        db.exec("INSERT INTO {t} (id, title, body, status, updated_at) "
                "VALUES (6, 'Bytes', CAST(X'C328' AS TEXT), 'open', :ts)", ts=at(6))
        bad["6"] = "column body: not valid UTF-8"
    engine = make(db, max_text_kb=1)
    r = engine.sync("tickets")
    assert r.added == 3 and r.failed == len(bad)
    errors = {e["key"]: e["error"] for e in r.errors}
    for key, message in bad.items():
        assert message in errors[key]
    assert {e["key"] for e in engine.ledger.errors("tickets")} == set(bad)
    assert set(docs(engine)) == {"1", "2", "3"}
    # the same bad versions are not reported again by every poll
    assert engine.sync("tickets").failed == 0
    # a fixed row goes in
    db.exec("UPDATE {t} SET title = 'Fixed', body = 'now with text', updated_at = :ts "
            "WHERE id = 4", ts=at(9))
    r = engine.sync("tickets")
    assert r.added == 1 and "now with text" in docs(engine)["4"]


def test_composite_key_version_cursor_and_query_source(lite: Db, make: Any) -> None:
    lite.exec("CREATE TABLE orgs (org TEXT PRIMARY KEY, name TEXT)")
    lite.exec("CREATE TABLE notes (org TEXT, id INTEGER, body TEXT, version INTEGER, "
              "PRIMARY KEY (org, id))")
    lite.exec("INSERT INTO orgs VALUES ('a/b', 'Acme'), ('c%d', 'Cyber')")
    lite.exec("INSERT INTO notes VALUES ('a/b', 1, 'first note', 1), ('a/b', 2, 'second', 2), "
              "('c%d', 1, 'third note', 3)")
    query = ("SELECT n.org, n.id, n.body, n.version, o.name AS org_name "
             "FROM notes n JOIN orgs o ON o.org = n.org")
    engine = make(lite, table=None, query=query, key=["org", "id"], text="{org_name}: {body}",
                  metadata=["org_name"], cursor="version", deleted=None)
    r = engine.sync("tickets")
    assert r.added == 3
    assert docs(engine) == {"a%2Fb/1": "Acme: first note", "a%2Fb/2": "Acme: second",
                            "c%25d/1": "Cyber: third note"}
    lite.exec("UPDATE notes SET body = 'first note, edited', version = 4 "
              "WHERE org = 'a/b' AND id = 1")
    r = engine.sync("tickets", keys=["a%2Fb/1", "nope/9", "garbage"])
    assert r.updated == 1 and docs(engine)["a%2Fb/1"] == "Acme: first note, edited"
    lite.exec("DELETE FROM notes WHERE org = 'c%d'")
    r = engine.sync("tickets")
    assert r.deleted == 1 and set(docs(engine)) == {"a%2Fb/1", "a%2Fb/2"}


def test_dropped_table_is_an_error_and_nothing_is_deleted(db: Db, make: Any) -> None:
    seed(db, 3)
    engine = make(db)
    engine.sync("tickets")
    db.exec("DROP TABLE {t}")
    with pytest.raises(ConfigError, match="dropped or renamed"):
        engine.sync("tickets")
    assert set(docs(engine)) == {"1", "2", "3"}
    fresh = make(db)  # a new process: the table is missing when it is first looked up
    with pytest.raises(ConfigError, match=r"sources\.tickets\.table: .*not found"):
        fresh.sync("tickets")
    assert set(docs(fresh)) == {"1", "2", "3"}


def test_emptied_table_is_not_silently_deleted(lite: Db, make: Any) -> None:
    seed(lite, 12)
    engine = make(lite)
    engine.sync("tickets")
    lite.exec("DELETE FROM {t}")
    with pytest.raises(SourceError, match="refusing"):
        engine.sync("tickets")
    assert len(docs(engine)) == 12
    engine.source("tickets").opts.max_delete_fraction = 1.0
    assert engine.sync("tickets").deleted == 12


@pytest.mark.parametrize("overrides, message", [
    ({"key": []}, r"sources\.tickets\.key: .*at least one"),
    ({"query": "SELECT 1"}, r"sources\.tickets: .*exactly one of table or query"),
    ({"table": None, "query": "DELETE FROM tickets"}, r"sources\.tickets\.query: .*read-only"),
    ({"text": "plain"}, r"sources\.tickets\.text: .*names no column"),
    ({"text": "{0}"}, r"sources\.tickets\.text: bad template"),
    ({"metadata": ["nope"]}, r"sources\.tickets\.metadata: no column 'nope'"),
    ({"cursor": "nope"}, r"sources\.tickets\.cursor: no column 'nope'"),
    ({"page_size": 0}, r"sources\.tickets\.page_size"),
    ({"colour": "red"}, r"sources\.tickets\.colour: Extra inputs"),
    ({"notify": True}, r"sources\.tickets\.notify: only Postgres"),
    ({"url": "sqlite:////nowhere/x.db"}, r"sources\.tickets\.url: SQLite file"),
    ({"url": "oracle://x/y"}, r"sources\.tickets\.url: unsupported database"),
])
def test_config_errors_name_the_key(lite: Db, make: Any, overrides: dict[str, Any],
                                    message: str) -> None:
    seed(lite, 1)
    engine = make(lite, **overrides)
    with pytest.raises(ConfigError, match=message):
        engine.sync("tickets")


def test_reconcile_counts_ranges_instead_of_listing_keys(lite: Db, make: Any) -> None:
    lite.create_tickets()
    n = 1500
    with lite.admin.begin() as conn:
        for i in range(1, n + 1):
            lite.insert(i, f"T{i}", f"body {i}", t=i % 50, conn=conn)
    engine = make(lite, reconcile_every=10**9)
    assert engine.sync("tickets").added == n
    lite.exec("DELETE FROM {t} WHERE id IN (17, 750, 1499)")
    lite.exec("INSERT INTO {t} (id, title, body, status) VALUES (9001, 'No cursor', 'x', 'o')")
    src = engine.source("tickets")
    src.opts.reconcile_every = 0
    started = time.perf_counter()
    r = engine.sync("tickets")
    seconds = time.perf_counter() - started
    assert (r.deleted, r.added) == (3, 1)  # the NULL-cursor row is found by the reconcile
    stats = src.last_reconcile
    assert stats["missing"] == 3 and stats["extra"] == 1
    assert stats["queries"] <= 10, stats  # one count query, a few small leaf lists
    print(f"reconcile of {n} rows: {stats}, sync {seconds:.2f} s")


def test_the_cursor_lives_in_the_engines_ledger(lite: Db, make: Any) -> None:
    seed(lite, 2)
    engine = make(lite)
    assert engine.source("tickets").ledger is engine.ledger


def test_sessions_are_read_only_and_time_limited(db: Db, make: Any) -> None:
    seed(db, 1)
    engine = make(db, statement_timeout=7)
    src = engine.source("tickets")
    probe = {"postgres": "SHOW statement_timeout", "mariadb": "SELECT @@max_statement_time",
             "sqlite": "PRAGMA query_only"}[db.kind]
    with src.db.connect() as conn:  # type: ignore[attr-defined]
        value = str(conn.exec_driver_sql(probe).scalar())
        assert value in ("7s", "7.0", "7.000000", "1"), value
        with pytest.raises(sa.exc.DBAPIError, match="(?i)read.only|readonly"):
            conn.execute(sa.text(f"UPDATE {db.table} SET title = 'x'"))
