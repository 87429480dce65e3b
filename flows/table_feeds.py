"""Table sources in the watcher: per-source poll schedules and the Postgres LISTEN/NOTIFY feed."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flows.batching import Coalescer

log = logging.getLogger("freshrag.watch.tables")
LISTEN_WAIT_S = 10.0  # how long the watcher's start waits for each listener to be in place


def notify_wanted(config: Any) -> bool:
    """The source is a SQL table with `notify = true` (validated by the SQL source's options)."""
    return config.type == "sql" and bool(config.options().get("notify"))


class NotifyFeed:
    """One thread LISTENing on a Postgres source's channel; notified keys go to the coalescer.

    The engine re-reads each key, so a key whose row is gone is a delete. Every reconnect after
    the first is followed by a rescan with a reconcile: notifications sent while the connection
    was down are lost, hard deletes among them."""

    def __init__(self, config: Any, coalescer: Coalescer, source: Any = None):
        self.config, self.coalescer, self.source_obj = config, coalescer, source
        self.source: str = config.name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()
        self.connections = 0
        self.late = False

    def prepare(self) -> None:
        """Install or verify the trigger. ConfigError (exit 2) when the table is missing or the
        role may not create it; an unreachable database only warns (the listener retries)."""
        import psycopg

        from connectors import pg_notify

        try:
            p = pg_notify.plan(self.config)
            if pg_notify.ensure(self.config):
                log.warning("%s: installed notify trigger %s on %s (channel %s); undo with: "
                            "freshrag sql notify-uninstall %s", self.source, p.trigger, p.table,
                            p.channel, self.source)
            else:
                log.info("%s: notify trigger %s on %s is in place", self.source, p.trigger,
                         p.table)
        except psycopg.OperationalError as exc:
            log.warning("%s: cannot reach the database to check the notify trigger (%s); the "
                        "listener will retry and the poll covers changes meanwhile", self.source,
                        _first_line(exc))

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"notify-{self.source}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from connectors import pg_notify

        delay = 1.0
        while not self._stop.is_set():
            try:
                pg_notify.listen(self.config, self._keys, self._stop, window=0.01, echo=None,
                                 on_connect=self._connected)
                return
            except Exception as exc:  # noqa: BLE001 - e.g. the trigger was dropped, no privilege
                log.error("%s: notify listener failed: %s; retrying in %.0f s (the poll covers "
                          "changes meanwhile)", self.source, _first_line(exc), delay)
                self.listening.clear()
                self._stop.wait(delay)
                delay = min(delay * 2, 60.0)
                self._rescan()

    def _keys(self, keys: list[str]) -> None:
        self.coalescer.add(self.source, keys)

    def _connected(self, n: int) -> None:
        self.connections += 1
        if not self.listening.is_set():
            log.info("%s: listening for notifications", self.source)
        self.listening.set()
        if self.connections > 1 or self.late:
            self.late = False
            self._rescan()

    def _rescan(self) -> None:
        force = getattr(self.source_obj, "force_reconcile", None)
        if force is not None:
            force()
        self.coalescer.rescan(self.source)

    def healthy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def restart(self) -> None:
        log.warning("%s: notify listener stopped; restarting it and rescanning", self.source)
        self.stop()
        self.start()
        self._rescan()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=5)
        self._thread = None


class TableFeeds:
    """The watcher's table sources: each polled on its own `poll_interval` (the watcher's
    `--poll` when unset), plus a NotifyFeed for each Postgres table with `notify = true`."""

    def __init__(self, coalescer: Coalescer, default_poll: float):
        self.coalescer, self.default_poll = coalescer, default_poll
        self.every: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.notify: list[NotifyFeed] = []

    def add(self, name: str, source: Any, config: Any, local: bool) -> None:
        """A source without a live folder feed. In local mode its polls space reconciles out
        (the start-up poll still reconciles); in events mode each rescan is a flow run."""
        interval = getattr(source, "poll_interval", None)
        self.every[name] = float(interval) if interval else self.default_poll
        self.last[name] = time.monotonic()
        if local and hasattr(source, "reconcile_spaced"):
            source.reconcile_spaced = True
            source.force_reconcile()
        if notify_wanted(config):
            self.notify.append(NotifyFeed(config, self.coalescer, source if local else None))

    def start(self) -> None:
        """Install or verify every trigger first (any ConfigError stops the watcher before it
        listens anywhere), then start the listeners."""
        for feed in self.notify:
            feed.prepare()
        for feed in self.notify:
            feed.start()
        for feed in self.notify:  # the start-up poll comes after LISTEN: nothing falls between
            if not feed.listening.wait(LISTEN_WAIT_S):
                feed.late = True  # its first connection will be followed by a rescan

    def tick(self, now: float | None = None) -> None:
        """Restart a dead listener; ask for a rescan of each table whose poll is due."""
        for feed in self.notify:
            if not feed.healthy():
                feed.restart()
        now = time.monotonic() if now is None else now
        for name, every in self.every.items():
            if now - self.last[name] >= every:
                self.last[name] = now
                self.coalescer.rescan(name)

    def stop(self) -> None:
        for feed in self.notify:
            feed.stop()
        self.notify.clear()


def trigger_warning(config: Any) -> str | None:
    """For the Prefect sync flow (flows do not listen): a warning when a `notify = true` source
    has no current trigger, naming the command that installs it."""
    if not notify_wanted(config):
        return None
    from connectors import pg_notify

    try:
        p = pg_notify.plan(config)
        with pg_notify._connect(config, autocommit=True) as conn:
            if pg_notify._is_current(conn, p):
                return None
        return (f"{config.name}: notify = true but the notify trigger {p.trigger} on {p.table} "
                f"is missing or out of date; changes arrive only by polling until `freshrag "
                f"sql notify-install {config.name}` (or `freshrag watch`) installs it")
    except Exception as exc:  # noqa: BLE001 - a warning, never a failed run
        return f"{config.name}: cannot check the notify trigger: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
