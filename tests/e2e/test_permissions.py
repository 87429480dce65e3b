"""Permissions as a user sets them up: `[[api.clients]]` in freshrag.toml, `permissions` on a
folder and a Postgres table, `freshrag watch` and `freshrag serve`; a chmod or an UPDATE of
the readers column hides a document from a client, and embeds nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.test_metrics import get, parse
from tests.e2e.test_sql_live import execute
from tests.e2e.userpath import Project, free_port, wait_until
from tests.pg import fresh_postgres_database

# (file, owner uid, group gid, mode, its word)
FILES = [("open.md", 1001, 2001, 0o644, "lighthouse"),
         ("team.md", 1001, 2001, 0o640, "orchard"),
         ("private.md", 1002, 2002, 0o600, "glacier")]
CLIENTS = """
[[api.clients]]
name = "alice"
key_env = "ALICE_KEY"
principals = ["uid:1001"]

[[api.clients]]
name = "bob"
key = "key-bob"
principals = ["uid:1002", "gid:2001"]

[[api.clients]]
name = "guest"
key = "key-guest"

[[api.clients]]
name = "ops"
key = "key-ops"
admin = true
"""
TICKETS = ("CREATE TABLE tickets (id int PRIMARY KEY, body text, readers text, "
           "updated_at timestamptz NOT NULL DEFAULT clock_timestamp())")


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from fresh_postgres_database()


def keys(base: str, key: str, word: str, source: str) -> set[str]:
    r = httpx.post(f"{base}/search", headers={"X-API-Key": key}, timeout=30, json={
        "query": word, "mode": "keyword", "k": 10, "filters": {"source": source}})
    assert r.status_code == 200, r.text
    return {h["doc_key"] for h in r.json()["hits"]}


def sees(base: str, key: str) -> set[str]:
    """The documents a client finds, by each one's word."""
    found = set()
    for name, _, _, _, word in FILES:
        if name in keys(base, key, word, "docs"):
            found.add(name)
    for row, word in (("1", "printer"), ("2", "invoice")):
        if row in keys(base, key, word, "tickets"):
            found.add(f"tickets/{row}")
    return found


@pytest.mark.slow
def test_each_client_sees_what_it_may_read_and_a_revoke_reaches_it_without_embedding(
        project: Project, pg_url: str) -> None:
    execute(pg_url, TICKETS,
            "INSERT INTO tickets (id, body, readers) VALUES "
            "(1, 'The printer jams again.', 'uid:1002, gid:2001'), "
            "(2, 'The invoice is overdue.', 'uid:1001')")
    for name, uid, gid, mode, word in FILES:
        path = project.docs / name
        path.write_text(f"# {word.title()}\n\nThe {word} note, for its readers only.\n")
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    for d in (project.root.parent, project.root, project.docs):
        os.chmod(d, 0o755)
    project.write_config(
        '[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\npermissions = "posix"\n\n'
        f'[[sources]]\nname = "tickets"\ntype = "sql"\nurl = "{pg_url}"\ntable = "tickets"\n'
        'key = "id"\ntext = "{body}"\ncursor = "updated_at"\nnotify = true\n'
        'permissions = "readers"\n' + CLIENTS)
    project.env["ALICE_KEY"] = "key-alice"
    metrics_port = free_port()
    watch = project.start("watch", "--record", "off", "--metrics-port", str(metrics_port))
    watch.wait_for_log("; ready", 180)
    _, base = project.serve()
    wait_until(lambda: sees(base, "key-ops") == {n for n, *_ in FILES}
               | {"tickets/1", "tickets/2"}, "everything indexed")

    assert sees(base, "key-alice") == {"open.md", "team.md", "tickets/2"}
    assert sees(base, "key-bob") == {"open.md", "team.md", "private.md", "tickets/1"}
    assert sees(base, "key-guest") == {"open.md"}
    assert httpx.post(f"{base}/search", json={"query": "x"}).status_code == 401

    # /documents: 404 for what the caller may not read, the same body as a missing document
    doc = httpx.get(f"{base}/documents/docs/private.md", headers={"X-API-Key": "key-alice"})
    missing = httpx.get(f"{base}/documents/docs/nothing.md", headers={"X-API-Key": "key-alice"})
    assert (doc.status_code, missing.status_code) == (404, 404)
    assert doc.json()["detail"] == missing.json()["detail"].replace("nothing.md", "private.md")
    own = httpx.get(f"{base}/documents/docs/private.md", headers={"X-API-Key": "key-bob"})
    assert own.status_code == 200 and "glacier" in own.text
    # counts for admins only
    row = httpx.get(f"{base}/status", headers={"X-API-Key": "key-guest"}).json()["sources"][0]
    assert row["documents"] is None and row["freshness"]["watermark"] is not None
    assert httpx.get(f"{base}/metrics", headers={"X-API-Key": "key-guest"}).status_code == 403

    def embedded() -> float:
        samples = parse(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text)
        return sum(get(samples, "freshrag_chunks_total", source=s, kind="embedded")
                   for s in ("docs", "tickets"))

    before = embedded()
    os.chmod(project.docs / "team.md", 0o600)  # the group loses it: bob is in gid 2001 only
    wait_until(lambda: "team.md" not in sees(base, "key-bob"), "chmod 600 to hide it from bob")
    assert "team.md" in sees(base, "key-alice")  # the owner still reads it
    execute(pg_url, "UPDATE tickets SET readers = 'uid:1001', updated_at = clock_timestamp() "
                    "WHERE id = 1")
    wait_until(lambda: "tickets/1" not in sees(base, "key-bob"), "the UPDATE to hide row 1")
    assert "tickets/1" in sees(base, "key-alice")
    assert embedded() == before, "a permission change embedded chunks"
    assert watch.stop() == 0
