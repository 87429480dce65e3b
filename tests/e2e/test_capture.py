"""Change capture as a user runs it: `freshrag watch` + `serve` on a freshrag.toml with a
`capture = "binlog"` MariaDB table (a server of our own with a ROW binlog), a `capture =
"changelog"` SQLite table and a `capture = "logical"` Postgres table (a cluster of our own with
wal_level = logical), commands run from another folder."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.capture_servers import binlog_mariadb, fresh_database, logical_postgres
from tests.e2e.test_metrics import parse
from tests.e2e.test_sql_live import Api, execute, project_config, table_source
from tests.e2e.userpath import Background, Project, wait_until

__all__ = ["binlog_mariadb", "logical_postgres"]  # session fixtures used here
NOTES = ["alphaprinter", "betalogin", "gammainvoice"]


def capture_metrics(api: Api, mode: str) -> dict[str, float]:
    """The `freshrag_capture_*` gauges serve's /metrics exports for the notes table."""
    r = api.http.get(f"{api.base}/metrics")
    assert r.status_code == 200, r.text
    return {name: value for (name, labels), value in parse(r.text).items()
            if name.startswith("freshrag_capture_")
            and dict(labels) == {"source": "notes", "mode": mode}}


@pytest.fixture
def my_binlog_url(binlog_mariadb: str) -> Iterator[str]:
    yield from fresh_database(binlog_mariadb)


@pytest.fixture
def pg_logical_url(logical_postgres: str) -> Iterator[str]:
    yield from fresh_database(logical_postgres)


def seed(url: str, ts: str) -> None:
    execute(url, f"CREATE TABLE notes (id int PRIMARY KEY, title varchar(100), body text, "
                 f"updated_at {ts} NOT NULL)")
    for i, word in enumerate(NOTES, 1):
        execute(url, "INSERT INTO notes VALUES (:i, :t, :b, CURRENT_TIMESTAMP)",
                i=i, t=f"Note {i}", b=f"The {word} problem is back.")


def watch_and_serve(project: Project) -> tuple[Background, Api]:
    watch = project.start("watch", "--record", "off")
    # serve after the first sync: a keyword search of an index whose full-text index is not
    # built yet answers 500 (LanceDB "Cannot perform full text search unless an INVERTED
    # index has been created"), a race of the index adapter that is not this test's subject
    watch.wait_for_log("notes (rescan): ", 180)
    _, base = project.serve()
    api = Api(base)
    wait_until(lambda: api.keys("notes", "betalogin") == {"2"}, "the table indexed", 180)
    return watch, api


@pytest.mark.slow
def test_binlog_follows_updates_and_deletes_and_a_killed_watcher_loses_nothing(
        project: Project, my_binlog_url: str) -> None:
    seed(my_binlog_url, "DATETIME(6)")
    # poll_interval = 3600 and overlap = 0: a body change that keeps updated_at can only
    # arrive through the binlog (the poll's cursor does not move)
    project_config(project, table_source("notes", my_binlog_url, "notes", capture="binlog",
                                         poll_interval=3600, overlap=0))
    watch, api = watch_and_serve(project)
    watch.wait_for_log("notes: following binlog changes")

    execute(my_binlog_url, "UPDATE notes SET body = 'The zetaupdate is here.' WHERE id = 1")
    wait_until(lambda: api.keys("notes", "zetaupdate") == {"1"}, "the UPDATE searchable")
    execute(my_binlog_url, "DELETE FROM notes WHERE id = 2")
    wait_until(lambda: not api.keys("notes", "betalogin"), "the DELETE gone")
    position = wait_until(lambda: project.json("status")[-1]["freshness"]["capture"]
                          .get("position"), "a saved binlog position")
    # the position lag status shows, exported as a gauge labelled by source and mode
    lag = wait_until(lambda: capture_metrics(api, "binlog"), "the binlog lag in /metrics")
    assert set(lag) == {"freshrag_capture_lag_bytes"} and lag[
        "freshrag_capture_lag_bytes"] >= 0, lag

    # SIGKILL mid-stream: nothing is flushed; changes made while it is down
    execute(my_binlog_url, "UPDATE notes SET body = 'The etaduring is here.' WHERE id = 3")
    assert watch.stop(signal.SIGKILL) != 0
    execute(my_binlog_url, "UPDATE notes SET body = 'The thetadown is here.' WHERE id = 1",
            "INSERT INTO notes VALUES (4, 'Note 4', 'The iotainsert arrived.', NOW(6))",
            "DELETE FROM notes WHERE id = 3")
    execute(my_binlog_url, "INSERT INTO notes VALUES (5, 'Note 5', 'The kappalate row.', "
                           "NOW(6))")
    execute(my_binlog_url, "UPDATE notes SET body = 'The lambdakept is here.' WHERE id = 5")
    project.start("watch", "--record", "off", name="watch-again")
    wait_until(lambda: api.keys("notes", "thetadown") == {"1"}, "an UPDATE made while down")
    wait_until(lambda: api.keys("notes", "lambdakept") == {"5"}, "a later UPDATE made while "
               "down")
    wait_until(lambda: api.keys("notes", "iotainsert") == {"4"}, "an INSERT made while down")
    wait_until(lambda: not api.keys("notes", "etaduring") and not api.keys("notes", "gamma"
                                                                            "invoice"),
               "a DELETE made while down gone")
    status = wait_until(lambda: (s := project.json("status")[-1]["freshness"]["capture"])
                        .get("position") != position and s, "the position moved on")
    assert status["mode"] == "binlog" and status["purged_gaps"] == 0, status


@pytest.mark.slow
def test_changelog_on_sqlite_follows_a_delete_and_trims_the_changelog(project: Project
                                                                      ) -> None:
    db = project.root / "app.db"
    url = f"sqlite:///{db}"
    seed(url, "TIMESTAMP")
    project_config(project, table_source("notes", "sqlite:///app.db", "notes",
                                         capture="changelog", poll_interval=3600))
    installed = project.run("sql", "capture-install", "notes")
    assert installed.returncode == 0 and "freshrag_changelog_notes" in installed.stdout, \
        installed.stderr
    watch, api = watch_and_serve(project)
    watch.wait_for_log("notes: following changelog changes")
    execute(url, "DELETE FROM notes WHERE id = 2")
    wait_until(lambda: not api.keys("notes", "betalogin"), "the DELETE gone")
    execute(url, "UPDATE notes SET body = 'The muupdate is here.' WHERE id = 1")
    wait_until(lambda: api.keys("notes", "muupdate") == {"1"}, "the UPDATE searchable")

    def trimmed() -> bool:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT count(*) FROM freshrag_changelog_notes").fetchone()[0] \
                == 0
    wait_until(trimmed, "the changelog trimmed after the index write")
    assert watch.stop() == 0
    done = project.run("sql", "capture-uninstall", "notes")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db) as conn:
        left = conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'freshrag%'")
        assert left.fetchall() == []


@pytest.mark.slow
def test_logical_slot_follows_update_and_delete_reports_lag_and_is_dropped_by_one_command(
        project: Project, pg_logical_url: str) -> None:
    seed(pg_logical_url, "timestamptz")
    project_config(project, table_source("notes", pg_logical_url, "notes", capture="logical",
                                         poll_interval=3600, overlap=0))
    watch, api = watch_and_serve(project)
    watch.wait_for_log("notes: following logical changes")
    execute(pg_logical_url, "UPDATE notes SET body = 'The nuupdate is here.' WHERE id = 1")
    wait_until(lambda: api.keys("notes", "nuupdate") == {"1"}, "the UPDATE searchable")
    execute(pg_logical_url, "DELETE FROM notes WHERE id = 2")
    wait_until(lambda: not api.keys("notes", "betalogin"), "the DELETE gone")
    status = project.json("status")[-1]["freshness"]["capture"]
    assert status["slot"] == "freshrag_notes" and status["retained_wal_bytes"] >= 0, status
    gauges = capture_metrics(api, "logical")
    assert set(gauges) == {"freshrag_capture_lag_bytes", "freshrag_capture_retained_wal_bytes"}
    assert gauges["freshrag_capture_retained_wal_bytes"] >= gauges[
        "freshrag_capture_lag_bytes"] >= 0, gauges  # restart_lsn <= confirmed_flush_lsn
    assert watch.stop() == 0

    dry = project.run("sql", "capture-uninstall", "notes", "--dry-run")
    assert "pg_drop_replication_slot" in dry.stdout, dry.stderr
    assert execute(pg_logical_url, "SELECT count(*) FROM pg_replication_slots")[0][0] == 1
    done = project.run("sql", "capture-uninstall", "notes")
    assert done.returncode == 0, done.stderr
    assert execute(pg_logical_url, "SELECT count(*) FROM pg_replication_slots")[0][0] == 0


def test_watch_exits_2_naming_the_key_when_the_server_cannot_capture(project: Project,
                                                                    tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    seed(f"sqlite:///{db}", "TIMESTAMP")
    project_config(project, table_source("notes", f"sqlite:///{db}", "notes", capture="binlog"))
    done = project.run("watch", "--record", "off", timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "freshrag: sources.notes.capture: 'binlog' is not supported on sqlite (it needs MySQL "
        "or MariaDB)"), done.stderr
