"""Table sources in the watcher: per-source poll schedules and each table's change stream."""

from __future__ import annotations

import logging
import time
from typing import Any

from flows.batching import Coalescer
from flows.capture_feeds import CaptureFeed, StreamFeed, _first_line, stream_mode

log = logging.getLogger("freshrag.watch.tables")
LISTEN_WAIT_S = 10.0  # how long the watcher's start waits for each listener to be in place


def notify_wanted(config: Any) -> bool:
    """The source is a SQL table with capture = "notify" (or its alias `notify = true`)."""
    return stream_mode(config) == "notify"


class NotifyFeed(CaptureFeed):
    """LISTEN on a Postgres source's channel. Every reconnect after the first is followed by a
    rescan with a reconcile: notifications sent while the connection was down are lost, hard
    deletes among them."""

    kind = "notify"

    def __init__(self, config: Any, coalescer: Coalescer, source: Any = None):
        super().__init__(config, coalescer, source)
        self.mode = "notify"

    def follow(self) -> None:
        from connectors import pg_notify

        pg_notify.listen(self.config, self._keys, self._stop, window=0.01, echo=None,
                         on_connect=self._connected)


class TableFeeds:
    """The watcher's table sources: each polled on its own `poll_interval` (the watcher's
    `--poll` when unset), plus a feed for each table with a change stream (`capture`)."""

    def __init__(self, coalescer: Coalescer, default_poll: float):
        self.coalescer, self.default_poll = coalescer, default_poll
        self.every: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.notify: list[CaptureFeed] = []  # every change-stream feed, notify or not

    def add(self, name: str, source: Any, config: Any, local: bool) -> None:
        """A source without a live folder feed. In local mode its polls space reconciles out
        (the start-up poll still reconciles); in events mode each rescan is a flow run."""
        interval = getattr(source, "poll_interval", None)
        self.every[name] = float(interval) if interval else self.default_poll
        self.last[name] = time.monotonic()
        if local and hasattr(source, "reconcile_spaced"):
            source.reconcile_spaced = True
            source.force_reconcile()
        mode = stream_mode(config)
        if mode == "notify":
            self.notify.append(NotifyFeed(config, self.coalescer, source if local else None))
        elif mode is not None:
            self.notify.append(StreamFeed(config, self.coalescer, source, local))

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
            feed.tick()
        now = time.monotonic() if now is None else now
        for name, every in self.every.items():
            if now - self.last[name] >= every:
                self.last[name] = now
                self.coalescer.rescan(name)

    def stop(self) -> None:
        for feed in self.notify:
            feed.stop()
        self.notify.clear()


def trigger_warning(config: Any, base_dir: Any = ".") -> str | None:
    """For the Prefect sync flow (flows do not follow streams): a warning when a source's
    capture (notify trigger, changelog triggers, slot) is missing, naming the command that
    installs it."""
    mode = stream_mode(config)
    if mode is None or mode == "binlog":
        return None
    from connectors import capture

    what = "notify trigger" if mode == "notify" else f"{mode} capture"
    try:
        p = capture.plan(config, mode)
        engine = capture.writable(config, base_dir)
        try:
            if capture.is_current(p, engine):
                return None
        finally:
            engine.dispose()
        setting = "notify = true" if mode == "notify" else f'capture = "{mode}"'
        command = "notify-install" if mode == "notify" else "capture-install"
        return (f"{config.name}: {setting} but the {what} on {p.table} is missing or out of "
                f"date; changes arrive only by polling until `freshrag sql {command} "
                f"{config.name}` (or `freshrag watch`) installs it")
    except Exception as exc:  # noqa: BLE001 - a warning, never a failed run
        return f"{config.name}: cannot check the {what}: {_first_line(exc)}"
