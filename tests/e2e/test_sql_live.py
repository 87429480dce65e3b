"""Table sources as a user drives them: `freshrag watch`, `sync` and `serve` on a project with a
Postgres `notify = true` table, a MariaDB table and a folder, run from another folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.userpath import Project, wait_until
from tests.pg import fresh_postgres_database

MY_ADMIN = os.environ.get("FRESHRAG_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")
README = Path(__file__).resolve().parents[2] / "README.md"
TICKETS = "CREATE TABLE tickets (id int PRIMARY KEY, title text, body text, " \
          "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from fresh_postgres_database()


@pytest.fixture
def my_url() -> Iterator[str]:
    admin = sa.create_engine(MY_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"MariaDB at {MY_ADMIN} is not reachable in CI: {exc}")
        pytest.skip(f"MariaDB at {MY_ADMIN} is not reachable: {exc}")
    name = f"fr_e2e_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield sa.make_url(MY_ADMIN).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


def execute(url: str, *statements: str, **params: Any) -> Any:
    db = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with db.connect() as conn:
            result = None
            for stmt in statements:
                result = conn.execute(sa.text(stmt), params)
                if result.returns_rows:
                    result = result.all()
            return result
    finally:
        db.dispose()


def seed_tickets(url: str) -> None:
    execute(url, TICKETS)
    for i, word in enumerate(["alphaprinter", "betalogin", "gammainvoice"], 1):
        execute(url, "INSERT INTO tickets (id, title, body) VALUES (:i, :t, :b)",
                i=i, t=f"Ticket {i}", b=f"The {word} problem is back.")


def table_source(name: str, url: str, table: str, **extra: Any) -> str:
    lines = ["[[sources]]", f'name = "{name}"', 'type = "sql"', f'url = "{url}"',
             f'table = "{table}"', 'key = "id"', 'text = "{title}\\n\\n{body}"',
             'cursor = "updated_at"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def project_config(project: Project, *tables: str) -> None:
    (project.docs / "guide.md").write_text("# Guide\n\nThe deltawelcome guide for new staff.\n")
    project.write_config(f'home = "{project.root / ".freshrag"}"\n\n[[sources]]\nname = "docs"\n'
                         'type = "folder"\npath = "docs"\n\n' + "\n".join(tables))


class Api:
    """`POST /search` of a running `freshrag serve`, keyword mode."""

    def __init__(self, base: str):
        self.base, self.http = base, httpx.Client(timeout=30)

    def keys(self, source: str, token: str) -> set[str]:
        r = self.http.post(f"{self.base}/search", json={
            "query": token, "mode": "keyword", "k": 10, "filters": {"source": source}})
        assert r.status_code == 200, r.text
        return {h["doc_key"] for h in r.json()["hits"] if token in h["text"]}


@pytest.mark.slow
def test_watch_follows_a_notify_table_a_polled_mariadb_table_and_a_folder(
        project: Project, pg_url: str, my_url: str) -> None:
    seed_tickets(pg_url)
    execute(my_url, "CREATE TABLE notes (id INT PRIMARY KEY, title VARCHAR(100), body TEXT, "
                    "updated_at DATETIME(6) NOT NULL)",
            "INSERT INTO notes VALUES (1, 'Note 1', 'The epsilonnote is filed.', NOW(6))")
    # poll_interval = 3600: a change of `tickets` can only arrive through LISTEN/NOTIFY
    project_config(project,
                   table_source("tickets", pg_url, "tickets", notify=True, poll_interval=3600),
                   table_source("notes", my_url, "notes", poll_interval=1))
    watch = project.start("watch", "--record", "off")
    _, base = project.serve()
    api = Api(base)
    wait_until(lambda: api.keys("docs", "deltawelcome") == {"guide.md"}, "the folder indexed")
    wait_until(lambda: api.keys("tickets", "betalogin") == {"2"}, "the table indexed")
    watch.wait_for_log("tickets: listening for notifications")
    assert "installed notify trigger freshrag_notify_tickets" in watch.log()
    triggers = execute(pg_url, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal")
    assert triggers[0][0] == 1

    execute(pg_url, "UPDATE tickets SET body = 'The zetaupdate is here.', "
                    "updated_at = clock_timestamp() WHERE id = 1")
    wait_until(lambda: api.keys("tickets", "zetaupdate") == {"1"}, "the UPDATE searchable")
    execute(pg_url, "INSERT INTO tickets (id, title, body) VALUES (4, 'Ticket 4', "
                    "'The etainsert arrived.')")
    wait_until(lambda: api.keys("tickets", "etainsert") == {"4"}, "the INSERT searchable")
    execute(pg_url, "DELETE FROM tickets WHERE id = 2")  # a hard delete, no cursor to see it
    wait_until(lambda: not api.keys("tickets", "betalogin"), "the hard DELETE gone")

    # the listener's backend is terminated (a failover, an admin): the watcher reconnects
    killed = execute(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                             "application_name = 'freshrag-notify:tickets'")
    assert killed and all(row[0] for row in killed)
    watch.wait_for_log("LISTEN connection re-established")
    execute(pg_url, "UPDATE tickets SET body = 'The thetaafter is here.', "
                    "updated_at = clock_timestamp() WHERE id = 3")
    wait_until(lambda: api.keys("tickets", "thetaafter") == {"3"}, "an UPDATE after the kill")

    # MariaDB has no notify: its own poll_interval (1 s, not the default 5 s) finds the update
    wait_until(lambda: api.keys("notes", "epsilonnote") == {"1"}, "the MariaDB table indexed")
    execute(my_url, "UPDATE notes SET body = 'The iotanote changed.', updated_at = NOW(6) "
                    "WHERE id = 1")
    wait_until(lambda: api.keys("notes", "iotanote") == {"1"}, "the MariaDB update searchable")
    assert watch.stop() == 0


@pytest.mark.slow
def test_manual_sync_reconciles_deletes_and_readmes_curl_example_answers(
        project: Project, pg_url: str) -> None:
    seed_tickets(pg_url)
    project_config(project, table_source("tickets", pg_url, "tickets"))
    first = project.json("sync")
    assert first["documents"]["added"] == 4, first  # the guide and three rows
    execute(pg_url, "DELETE FROM tickets WHERE id = 2")
    again = project.json("sync")
    assert again["documents"]["deleted"] == 1 and again["documents"]["unchanged"] == 3, again

    status = {row["source"]: row for row in project.json("status")}
    assert set(status["tickets"]["freshness"]) >= {"lag_ms", "watermark", "method"}
    assert status["tickets"]["freshness"]["method"] == "last_poll"
    assert isinstance(status["tickets"]["last_sync_end"], float)

    # README's curl example, as written but for the port, with `serve` and no watcher running
    block = re.search(r"```sh\n(curl -s localhost:8000/search .*?)\n```", README.read_text(),
                      re.S)
    assert block, "README's curl example is gone"
    _, base = project.serve()
    command = block.group(1).replace("localhost:8000", base.removeprefix("http://"))
    command += " -o response.json -w '%{http_code}'"
    done = subprocess.run(["bash", "-c", command], cwd=project.elsewhere, capture_output=True,
                          text=True, timeout=60)
    body = json.loads((project.elsewhere / "response.json").read_text())
    assert done.stdout == "200", body
    assert body["freshness"]["tickets"]["method"] == "poll"  # polled now to prove it current
    assert body["freshness"]["tickets"]["lag_ms"] == 0.0
    assert body["freshness"]["docs"]["lag_ms"] == 0.0

    hits = httpx.post(f"{base}/search", json={"query": "gammainvoice", "mode": "keyword",
                                               "filters": {"source": "tickets"}}).json()["hits"]
    assert [(h["doc_key"], h["title"]) for h in hits] == [("3", "Ticket 3")]


def test_watch_exits_2_with_one_line_when_the_notify_trigger_cannot_be_installed(
        project: Project, pg_url: str) -> None:
    project_config(project, table_source("tickets", pg_url, "no_such_table", notify=True))
    done = project.run("watch", "--record", "off", timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert lines[-1].startswith("freshrag: sources.tickets.notify: cannot install the notify "
                                "trigger on \"no_such_table\""), done.stderr
    assert "Traceback" not in done.stderr

    project.write_config(project.config.read_text().replace(
        'table = "no_such_table"', 'query = "SELECT 1 AS id, now() AS updated_at"'))
    done = project.run("watch", "--record", "off", timeout=300)
    assert done.returncode == 2 and "sources.tickets.notify: needs `table`" in done.stderr, \
        done.stderr
