"""What the watcher, a one-off sync and the API's freshness check get from a table source."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from connectors import pg_notify
from flows.batching import Coalescer
from flows.table_feeds import NotifyFeed, TableFeeds, trigger_warning
from freshrag.api.freshness import measure
from freshrag.config import ConfigError
from tests.sql.conftest import Db, at, docs
from tests.sql.test_sync import seed


def test_a_one_off_sync_always_reconciles_and_counts_the_delete(lite: Db, make: Any) -> None:
    seed(lite, 3)
    engine = make(lite, reconcile_every=3600)
    engine.sync("tickets")
    lite.exec("DELETE FROM {t} WHERE id = 2")
    r = engine.sync("tickets")  # within reconcile_every of the first: still reconciled
    assert r.deleted == 1 and set(docs(engine)) == {"1", "3"}


def test_watcher_polls_space_reconciles_but_the_first_and_forced_ones_run(
        lite: Db, make: Any) -> None:
    seed(lite, 3)
    engine = make(lite, reconcile_every=3600)
    src = engine.source("tickets")
    feeds = TableFeeds(Coalescer(), default_poll=5.0)
    feeds.add("tickets", src, engine.settings.source("tickets"), local=True)
    assert feeds.every == {"tickets": 5.0}  # no poll_interval: the watcher's --poll
    engine.sync("tickets")
    lite.exec("DELETE FROM {t} WHERE id = 2")
    assert engine.sync("tickets").deleted == 0  # a frequent poll: reconcile not due
    src.force_reconcile()  # what a notify reconnect does
    assert engine.sync("tickets").deleted == 1


def test_poll_interval_of_the_source_wins_over_the_default(lite: Db, make: Any) -> None:
    seed(lite, 1)
    engine = make(lite, poll_interval=1)
    coalescer = Coalescer()
    feeds = TableFeeds(coalescer, default_poll=60.0)
    feeds.add("tickets", engine.source("tickets"), engine.settings.source("tickets"), True)
    assert feeds.every == {"tickets": 1.0}
    start = feeds.last["tickets"]
    feeds.tick(start + 0.5)
    assert coalescer.pending() == 0
    feeds.tick(start + 1.0)
    batch = coalescer.take(timeout=1)
    assert batch is not None and batch.keys is None  # a rescan of the table


def test_hits_have_the_rows_first_line_as_title(lite: Db, make: Any) -> None:
    seed(lite, 2)
    engine = make(lite)
    engine.sync("tickets")
    hits = engine.index.get_document("tickets", "2")
    assert [h.title for h in hits] == ["Ticket 2"]


def test_lag_is_the_last_poll_that_proved_the_index_current(lite: Db, make: Any) -> None:
    seed(lite, 2)
    engine = make(lite)
    never = measure(engine, "tickets")
    assert (never.lag_ms, never.method) == (None, "last_poll")
    before = time.time()
    engine.sync("tickets")
    shallow = measure(engine, "tickets")
    assert shallow.method == "last_poll" and shallow.watermark is not None
    assert shallow.watermark >= before and shallow.pending is None
    deep = measure(engine, "tickets", deep=True)  # a freshness demand: poll now
    assert (deep.method, deep.pending, deep.lag_ms) == ("poll", 0, 0.0)
    assert deep.watermark == deep.checked_at
    lite.exec("UPDATE {t} SET body = 'new', updated_at = :ts WHERE id = 1", ts=at(30))
    lite.exec("DELETE FROM {t} WHERE id = 2")  # hard: only the reconcile sees it
    deep = measure(engine, "tickets", deep=True)
    assert deep.pending == 2 and deep.watermark == shallow.watermark
    assert deep.lag_ms is not None and deep.lag_ms >= 1
    assert measure(engine, "tickets", deep=True).pending == 2  # read-only: nothing committed
    engine.sync("tickets")
    assert measure(engine, "tickets", deep=True).pending == 0


def test_watch_installs_the_trigger_once_and_listens(pg: Db, make: Any) -> None:
    seed(pg, 2)
    engine = make(pg, notify=True)
    cfg = engine.settings.source("tickets")
    assert trigger_warning(cfg) is not None and "freshrag sql notify-install tickets" in \
        str(trigger_warning(cfg))
    assert pg_notify.ensure(cfg) is True
    assert pg_notify.ensure(cfg) is False  # idempotent: the current trigger is kept
    assert trigger_warning(cfg) is None
    n = pg.exec("SELECT count(*) FROM pg_trigger WHERE tgname = 'freshrag_notify_tickets'")
    assert n.scalar() == 1

    coalescer = Coalescer()
    feed = NotifyFeed(cfg, coalescer, engine.source("tickets"))
    feed.start()
    try:
        assert feed.listening.wait(15)
        pg.exec("DELETE FROM {t} WHERE id = 2")
        batch = coalescer.take(timeout=10)
        assert batch is not None and batch.keys == ["2"]
        # the listener's backend is killed: it reconnects and asks for a rescan
        pid = pg.exec("SELECT pid FROM pg_stat_activity WHERE application_name = "
                      "'freshrag-notify:tickets'").scalar()
        pg.exec("SELECT pg_terminate_backend(:pid)", pid=pid)
        batch = coalescer.take(timeout=15)
        assert batch is not None and batch.keys is None and feed.connections == 2
        pg.exec("UPDATE {t} SET body = 'x', updated_at = :ts WHERE id = 1", ts=at(40))
        batch = coalescer.take(timeout=10)
        assert batch is not None and batch.keys == ["1"]
    finally:
        feed.stop()
    assert not feed.healthy()


def test_a_trigger_that_cannot_be_installed_names_the_source(pg: Db, make: Any) -> None:
    engine = make(pg, notify=True)  # the table does not exist
    with pytest.raises(ConfigError, match=r"^sources\.tickets\.notify: cannot install"):
        NotifyFeed(engine.settings.source("tickets"), Coalescer()).prepare()
    query = make(pg, notify=True, table=None, query="SELECT 1 AS id, now() AS updated_at")
    with pytest.raises(ConfigError, match=r"sources\.tickets\.notify: needs `table`"):
        NotifyFeed(query.settings.source("tickets"), Coalescer()).prepare()
    seed(pg, 1)
    role = f"fr_ro_{uuid.uuid4().hex[:8]}"
    pg.exec(f"CREATE ROLE {role} LOGIN")
    try:
        schema = pg.table.split(".")[0]
        pg.exec(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        pg.exec(f"GRANT SELECT ON {{t}} TO {role}")
        url = sa.make_url(pg.url).set(username=role).render_as_string(hide_password=False)
        weak = make(pg, notify=True, url=url)
        with pytest.raises(ConfigError, match=r"^sources\.tickets\.notify: cannot install .*"
                                              r"permission denied|must be owner"):
            NotifyFeed(weak.settings.source("tickets"), Coalescer()).prepare()
        weak.close()
    finally:
        pg.exec(f"DROP OWNED BY {role}")
        pg.exec(f"DROP ROLE {role}")


def test_events_mode_listens_and_announces_the_notified_keys(pg: Db, make: Any) -> None:
    from flows.watch import Watcher, WatchOptions

    seed(pg, 2)
    engine = make(pg, notify=True, poll_interval=3600)
    announced: list[list[str] | None] = []

    class Outbox:  # what the watcher hands to Prefect in events mode
        def add(self, batch: Any) -> None:
            announced.append(batch.keys)

    watcher = Watcher(engine.settings, ["tickets"], WatchOptions(mode="events", record="off"))
    watcher.outbox = Outbox()
    watcher.start()  # installs the trigger and listens before the start-up rescan
    try:
        assert watcher.loop(max_batches=1, max_seconds=30) == 1 and announced == [None]
        pg.exec("DELETE FROM {t} WHERE id = 2")
        assert watcher.loop(max_batches=1, max_seconds=30) == 1 and announced[-1] == ["2"]
    finally:
        watcher.shutdown()
