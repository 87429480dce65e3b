"""Postgres LISTEN/NOTIFY fast path, the CLI around its trigger, and an end-to-end search."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from typer.testing import CliRunner

from connectors import pg_notify
from freshrag.model import Filters, Mode
from tests.sql.conftest import Db, at, docs
from tests.sql.test_sync import seed, top_key


def test_notify_update_is_searchable_without_waiting_for_the_poll(pg: Db, make: Any) -> None:
    seed(pg, 3)
    engine = make(pg, notify=True, poll_interval=3600, reconcile_every=3600)
    engine.sync("tickets")
    cfg = engine.settings.source("tickets")
    batches: queue.Queue[list[str]] = queue.Queue()
    stop, ready = threading.Event(), threading.Event()
    printed: list[str] = []
    listener = threading.Thread(target=pg_notify.listen, args=(cfg, batches.put, stop),
                                kwargs={"ready": ready, "echo": printed.append}, daemon=True)
    listener.start()
    try:
        assert ready.wait(15), "listener did not start"
        assert "CREATE TRIGGER" in printed[0] and "freshrag sql notify-uninstall tickets" \
            in printed[0]  # the opt-in install says what it creates and how to undo it
        assert pg_notify.installed(cfg)

        started = time.perf_counter()
        pg.exec("UPDATE {t} SET body = 'omega toaster fire', updated_at = :ts WHERE id = 2",
                ts=at(50))
        keys = batches.get(timeout=5)
        delivered = time.perf_counter() - started
        r = engine.sync("tickets", keys=keys)
        searchable = time.perf_counter() - started
        assert keys == ["2"] and (r.updated, r.embedded) == (1, 1)
        assert top_key(engine, "omega toaster fire") == "2"
        print(f"notify: key delivered in {delivered * 1000:.0f} ms, "
              f"searchable in {searchable * 1000:.0f} ms")
        assert searchable < 2.0

        pg.exec("DELETE FROM {t} WHERE id = 3")
        assert batches.get(timeout=5) == ["3"]
        assert engine.sync("tickets", keys=["3"]).deleted == 1

        pg.insert(7, "Ticket 7", "sigma new row", t=60)
        assert engine.sync("tickets", keys=batches.get(timeout=5)).added == 1
        # the poll, still the safety net, finds nothing left to do
        r = engine.sync("tickets")
        assert (r.added, r.updated, r.deleted, r.embedded) == (0, 0, 0, 0)
    finally:
        stop.set()
        listener.join(5)
    pg_notify.uninstall(cfg, echo=None)
    assert not pg_notify.installed(cfg)
    assert set(docs(engine)) == {"1", "2", "7"}


def test_notify_cli_prints_what_it_creates_and_removes(pg: Db, tmp_path: Any) -> None:
    from freshrag.cli_sql import sql_app

    seed(pg, 1)
    config = tmp_path / "freshrag.toml"
    config.write_text(f'[[sources]]\nname = "tickets"\ntype = "sql"\nurl = "{pg.url}"\n'
                      f'table = "{pg.table}"\nkey = "id"\ntext = "{{title}}"\n'
                      f'cursor = "updated_at"\nnotify = true\n')
    runner = CliRunner()
    base = ["-c", str(config), "--home", str(tmp_path / "home")]
    out = runner.invoke(sql_app, ["notify-install", "tickets", "--dry-run", *base])
    assert out.exit_code == 0 and "CREATE OR REPLACE FUNCTION" in out.output
    assert not pg_notify.installed(_cfg(config))
    out = runner.invoke(sql_app, ["notify-install", "tickets", *base])
    assert out.exit_code == 0, out.output
    assert "Undo with: freshrag sql notify-uninstall tickets" in out.output
    assert pg_notify.installed(_cfg(config))
    out = runner.invoke(sql_app, ["notify-uninstall", "tickets", *base])
    assert out.exit_code == 0 and "DROP FUNCTION IF EXISTS" in out.output
    assert not pg_notify.installed(_cfg(config))
    out = runner.invoke(sql_app, ["notify-install", "nope", *base])
    assert out.exit_code == 2 and "unknown source 'nope'" in out.output


def _cfg(path: Any) -> Any:
    from freshrag.config import load_settings

    return load_settings(path).source("tickets")


def test_end_to_end_with_the_real_model(pg: Db, make: Any, embedder: Any) -> None:
    pg.create_tickets()
    rows = [("Printer", "The office printer jams on every second page.", "hardware"),
            ("Screen", "My monitor stays black after the laptop wakes up.", "hardware"),
            ("Payroll", "The salary transfer for March arrived twice.", "finance")]
    for i, (title, body, _) in enumerate(rows, 1):
        pg.insert(i, title, body, status=rows[i - 1][2], t=i)
    engine = make(pg, embedder=embedder)
    r = engine.sync("tickets")
    assert (r.added, r.embedded) == (3, 3)
    hits = engine.search("display is dark", k=1, mode=Mode.hybrid)
    assert hits[0].doc_key == "2" and hits[0].location.endswith("tickets:2")
    hits = engine.search("paid two times", k=3, mode=Mode.vector,
                         filters=Filters(metadata={"status": "finance"}))
    assert [h.doc_key for h in hits] == ["3"]
    pg.exec("UPDATE {t} SET status = 'finance', updated_at = :ts WHERE id = 1", ts=at(9))
    calls = embedder.calls
    r = engine.sync("tickets")
    assert (r.updated, r.embedded) == (1, 0) and embedder.calls == calls


def test_listen_needs_the_opt_in(pg: Db, make: Any) -> None:
    import pytest

    from freshrag.config import ConfigError

    seed(pg, 1)
    engine = make(pg)
    with pytest.raises(ConfigError, match=r"sources\.tickets\.notify: set notify = true"):
        pg_notify.listen(engine.settings.source("tickets"), print, threading.Event())
