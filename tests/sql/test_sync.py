"""The SQL source against real Postgres, MariaDB and SQLite: the whole change lifecycle."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.sql import SourceUnavailable
from freshrag.model import Filters, Mode
from tests.sql.conftest import Db, at, docs

WORDS = ["alpha printer jam", "beta login loop", "gamma invoice missing", "delta vpn drops",
         "epsilon disk full"]


def seed(db: Db, n: int = 5) -> None:
    db.create_tickets()
    for i in range(1, n + 1):
        db.insert(i, f"Ticket {i}", WORDS[(i - 1) % len(WORDS)], t=i)


def top_key(engine: Any, query: str, **filters: Any) -> str | None:
    hits = engine.search(query, k=1, mode=Mode.vector,
                         filters=Filters(source="tickets", metadata=filters) if filters else None)
    return hits[0].doc_key if hits else None


def test_lifecycle(db: Db, make: Any) -> None:
    seed(db)
    engine = make(db)
    r = engine.sync("tickets")
    assert (r.added, r.embedded, r.failed) == (5, 5, 0), r.errors
    assert set(docs(engine)) == {"1", "2", "3", "4", "5"}
    assert top_key(engine, "gamma invoice missing") == "3"

    # nothing changed: the overlap window re-reads rows, the fingerprints say "indexed"
    r = engine.sync("tickets")
    assert (r.added, r.updated, r.touched, r.deleted, r.embedded) == (0, 0, 0, 0, 0)

    # update a row's text: searchable, exactly one document re-embedded
    db.exec("UPDATE {t} SET body = 'zeta webcam frozen', updated_at = :ts WHERE id = 2",
            ts=at(10))
    r = engine.sync("tickets")
    assert (r.updated, r.embedded, r.added) == (1, 1, 0)
    assert "zeta webcam frozen" in docs(engine)["2"]
    assert top_key(engine, "zeta webcam frozen") == "2"

    # metadata-only change: properties updated, nothing embedded
    db.exec("UPDATE {t} SET status = 'closed', updated_at = :ts WHERE id = 3", ts=at(11))
    r = engine.sync("tickets")
    assert (r.updated, r.embedded, r.written) == (1, 0, 0)
    assert engine.index.get_document("tickets", "3")[0].metadata == {"status": "closed"}
    assert top_key(engine, "gamma invoice missing", status="closed") == "3"
    assert top_key(engine, "gamma invoice missing", status="open") != "3"

    # insert
    db.insert(6, "Ticket 6", "eta keyboard sticky", t=12)
    r = engine.sync("tickets")
    assert (r.added, r.embedded) == (1, 1)
    assert top_key(engine, "eta keyboard sticky") == "6"

    # hard delete: found by the reconcile
    db.exec("DELETE FROM {t} WHERE id = 1")
    r = engine.sync("tickets")
    assert r.deleted == 1 and "1" not in docs(engine)
    src = engine.source("tickets")
    assert src.last_reconcile["missing"] == 1

    # soft delete: removed at once by the poll
    db.exec("UPDATE {t} SET deleted = :d, updated_at = :ts WHERE id = 4", d=True, ts=at(13))
    r = engine.sync("tickets")
    assert r.deleted == 1 and set(docs(engine)) == {"2", "3", "5", "6"}

    # the cursor is in the ledger, and it is the newest row's
    state = json.loads(engine.ledger.source_state("tickets").cursor)
    assert state["cursor"]["dt"].startswith("2024-01-01") and state["key"] == [4]


def test_late_commit_with_older_cursor_is_not_missed(db: Db, make: Any) -> None:
    seed(db, 3)
    engine = make(db)
    assert engine.sync("tickets").added == 3
    if db.kind == "sqlite":  # one writer at a time: the late row simply arrives afterwards
        db.insert(11, "Ticket 11", "iota later row", t=6)
        assert engine.sync("tickets").added == 1
        db.insert(10, "Ticket 10", "kappa late committed row", t=5)
    else:
        with db.admin.connect().execution_options(isolation_level="READ COMMITTED") as late:
            tx = late.begin()
            db.insert(10, "Ticket 10", "kappa late committed row", t=5, conn=late)
            db.insert(11, "Ticket 11", "iota later row", t=6)  # commits first, newer cursor
            r = engine.sync("tickets")
            assert r.added == 1 and "10" not in docs(engine)
            tx.commit()
    src = engine.source("tickets")
    src.reconcile_spaced = True  # as the watcher polls: the overlap window alone must find it
    src.opts.reconcile_every = 10**9
    r = engine.sync("tickets")
    assert r.added == 1 and "kappa late committed row" in docs(engine)["10"]


def test_without_overlap_the_poll_misses_late_rows_and_the_reconcile_finds_them(
        lite: Db, make: Any) -> None:
    seed(lite, 3)
    engine = make(lite, overlap=0, reconcile_every=10**9)
    engine.source("tickets").reconcile_spaced = True  # as the watcher polls
    engine.sync("tickets")
    lite.insert(10, "Ticket 10", "kappa late committed row", t=2.5)
    assert engine.sync("tickets").added == 0  # dlt #2269: the classic cursor bug
    engine.source("tickets").opts.reconcile_every = 0
    r = engine.sync("tickets")
    assert r.added == 1 and "10" in docs(engine)


def _killing(db: Db, src: Any, when: Any) -> list[int]:
    calls: list[int] = []
    original = src.execute

    def execute(conn: sa.Connection, stmt: Any) -> Any:
        calls.append(1)
        if when(len(calls)):
            db.kill(conn)
        return original(conn, stmt)
    src.execute = execute
    return calls


def test_connection_killed_mid_poll_is_retried(db: Db, make: Any) -> None:
    seed(db, 5)
    for i in range(6, 11):
        db.insert(i, f"Ticket {i}", f"row number {i}", t=i)
    engine = make(db, page_size=3)
    src = engine.source("tickets")
    src.resolve()
    calls = _killing(db, src, lambda n: n == 2)  # the second page's connection dies
    r = engine.sync("tickets")
    assert len(calls) > 2 and r.added == 10 and r.failed == 0
    assert len(docs(engine)) == 10


def test_connection_down_for_the_whole_poll_then_next_poll_converges(db: Db, make: Any) -> None:
    seed(db, 5)
    engine = make(db, page_size=2, retries=2)
    src = engine.source("tickets")
    src.resolve()
    engine.sync("tickets")
    db.exec("UPDATE {t} SET body = 'changed while down', updated_at = :ts WHERE id = 4",
            ts=at(20))
    db.insert(7, "Ticket 7", "inserted while down", t=21)
    before = engine.ledger.source_state("tickets").cursor
    _killing(db, src, lambda n: n >= 2)
    with pytest.raises(SourceUnavailable):
        engine.sync("tickets")
    assert engine.ledger.source_state("tickets").cursor == before  # cursor did not advance
    del src.execute
    r = engine.sync("tickets")
    assert (r.added, r.updated, r.failed) == (1, 1, 0)
    assert "changed while down" in docs(engine)["4"] and "7" in docs(engine)
