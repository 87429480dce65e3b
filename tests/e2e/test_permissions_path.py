"""Permissions as a user gets them: `freshrag search --as` over a folder (POSIX owners, modes)
and a table (a readers column), kept fresh by `freshrag watch` as metadata, never re-embedded."""

from __future__ import annotations

import os
import sqlite3

import pytest

from tests.e2e.userpath import Background, Project

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")]


def _file(project: Project, name: str, text: str, uid: int, gid: int, mode: int) -> None:
    path = project.docs / name
    path.write_text(text)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def _line(watch: Background, start: str) -> str:
    """The watcher's log line for the batch that begins with `start` (waited for)."""
    watch.wait_for_log(start)
    return next(ln for ln in watch.log().splitlines() if f"freshrag.watch: {start}" in ln)


def _as(project: Project, *principals: str) -> set[str]:
    args = [a for p in principals for a in ("--as", p)]
    hits = project.json("search", "falcon", "--mode", "keyword", "-k", "10", *args)
    return {f"{h['source']}:{h['doc_key']}" for h in hits}


def test_search_as_principals_and_a_revoke_under_watch(project: Project) -> None:
    os.chmod(project.docs, 0o755)
    _file(project, "open.md", "# Open\n\nfalcon facts for all.\n", 1001, 1001, 0o644)
    _file(project, "group.md", "# Group\n\nfalcon facts for group 2001.\n", 1001, 2001, 0o640)
    _file(project, "private.md", "# Private\n\nfalcon facts of uid 1002.\n", 1002, 1002, 0o600)
    db = project.root / "tickets.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE tickets (id INTEGER PRIMARY KEY, body TEXT, readers TEXT, "
                  "v INTEGER)")
        c.executemany("INSERT INTO tickets VALUES (?, ?, ?, ?)", [
            (1, "falcon ticket of support", "group:support, user:bob", 1),
            (2, "falcon ticket with readers nobody set", None, 2)])
    project.write_config(
        f'home = "{project.root / "state"}"\n\n'
        '[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\npermissions = "posix"\n\n'
        f'[[sources]]\nname = "tickets"\ntype = "sql"\nurl = "sqlite:///{db}"\n'
        'table = "tickets"\nkey = "id"\ntext = "{body}"\ncursor = "v"\n'
        'permissions = "readers"\npoll_interval = 0.5\n')
    done = project.run("sync")
    assert done.returncode == 0, done.stderr
    assert ("readers unknown: tickets: 2: readers column 'readers' is NULL (indexed; nobody "
            "may read it but admins)") in done.stderr

    assert _as(project, "uid:1001") == {"docs:open.md", "docs:group.md"}
    assert _as(project, "gid:2001") == {"docs:open.md", "docs:group.md"}
    assert _as(project, "uid:1002") == {"docs:open.md", "docs:private.md"}
    assert _as(project, "uid:9", "group:support") == {"docs:open.md", "tickets:1"}
    bad = project.run("search", "falcon", "--as", "alice")
    assert bad.returncode == 2 and "--as 'alice': not a principal" in bad.stderr

    watch = project.start("watch", "--record", "off", "--poll", "0.5")
    watch.wait_for_log("; ready", 300)
    os.chmod(project.docs / "group.md", 0o600)
    assert "chunks 0 embedded, 0 reused, 0 written" in _line(watch, "docs (1 key(s)): 1 updated")
    assert _as(project, "gid:2001") == {"docs:open.md"}  # the sync above has committed

    with sqlite3.connect(db) as c:
        c.execute("UPDATE tickets SET readers = 'user:bob', v = 3 WHERE id = 1")
    assert "chunks 0 embedded, 0 reused, 0 written" in _line(watch, "tickets (rescan): 1 updated")
    assert _as(project, "group:support", "user:bob") == {"docs:open.md", "tickets:1"}
    assert _as(project, "group:support") == {"docs:open.md"}
    assert watch.stop() == 0, watch.log()[-3000:]
