"""Change-stream feeds of table sources: a thread per stream; positions advance once indexed."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from flows.batching import Coalescer

log = logging.getLogger("freshrag.watch.tables")


def stream_mode(config: Any) -> str | None:
    """The source's change stream (notify, changelog, binlog, logical), None when it only polls
    (validated by the SQL source's options)."""
    if config.type != "sql":
        return None
    opts = config.options()
    mode = opts.get("capture") or ("notify" if opts.get("notify") else "poll")
    return None if mode == "poll" else str(mode)


class CaptureFeed:
    """One thread following a table's change stream; the keys go to the coalescer.

    The engine re-reads each key, so a key whose row is gone is a delete. `prepare()` installs
    or verifies what the mode needs (connectors.capture) before the start-up poll."""

    kind = "capture"

    def __init__(self, config: Any, coalescer: Coalescer, source: Any = None):
        self.config, self.coalescer, self.source_obj = config, coalescer, source
        self.source: str = config.name
        self.mode = stream_mode(config) or "poll"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()
        self.connections = 0
        self.late = False

    @property
    def base_dir(self) -> Any:
        return getattr(getattr(self.source_obj, "settings", None), "base_dir", ".")

    def prepare(self) -> None:
        """Install or verify the capture. ConfigError (exit 2) when the server cannot do the
        mode, the table is missing or the role may not create it; an unreachable database only
        warns (the stream retries)."""
        import sqlalchemy as sa

        from connectors import capture

        try:
            p = capture.plan(self.config, self.mode)
            undo = "notify-uninstall" if self.mode == "notify" else "capture-uninstall"
            if capture.ensure(self.config, self.base_dir, self.mode) and p.install:
                what = (f"notify trigger {next(iter(p.expect))} on {p.table} (channel "
                        f"{p.channel})" if self.mode == "notify" else
                        f"{self.mode} capture: {'; '.join(p.summary)}")
                log.warning("%s: installed %s; undo with: freshrag sql %s %s", self.source,
                            what, undo, self.source)
            else:
                log.info("%s: %s capture on %s is in place", self.source, self.mode, p.table)
        except sa.exc.OperationalError as exc:
            log.warning("%s: cannot reach the database to check the %s capture (%s); the "
                        "stream will retry and the poll covers changes meanwhile", self.source,
                        self.mode, _first_line(exc))

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-{self.source}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                self.follow()
                return
            except Exception as exc:  # noqa: BLE001 - e.g. the trigger was dropped, no privilege
                log.error("%s: %s stream failed: %s; retrying in %.0f s (the poll covers "
                          "changes meanwhile)", self.source, self.mode, _first_line(exc), delay)
                self.listening.clear()
                self._stop.wait(delay)
                delay = min(delay * 2, 60.0)
                self.lost()

    def follow(self) -> None:
        """Read the stream until stopped (raises to be restarted with backoff)."""
        raise NotImplementedError

    def lost(self) -> None:
        """The stream failed: what it had not delivered may be lost."""
        self._rescan()

    def _keys(self, keys: list[str]) -> None:
        self.coalescer.add(self.source, keys)

    def _connected(self, n: int) -> None:
        self.connections += 1
        if not self.listening.is_set():
            log.info("%s: %s", self.source, "listening for notifications" if self.mode ==
                     "notify" else f"following {self.mode} changes")
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

    def tick(self) -> None:
        """Called by the watcher's thread between batches."""

    def restart(self) -> None:
        log.warning("%s: %s stream stopped; restarting it and rescanning", self.source,
                    self.mode)
        self.stop()
        self.start()
        self._rescan()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=5)
        self._thread = None


class StreamFeed(CaptureFeed):
    """A changelog table, a MySQL/MariaDB binlog or a Postgres slot, read by a connectors
    reader (`open`, `poll` -> [(position, keys)], `commit(positions)`, `close`).

    A position is committed (changelog rows deleted, binlog position saved, slot advanced) only
    once a pass that covers it succeeded: a batch of named keys, or a reconciling poll, whose
    cut came after the keys were queued (the SQL source counts `covering_commits`; the
    ledger's watermark is that batch's cut). A restart resumes from the last committed
    position: changes are delivered at least once, and the engine's re-read is idempotent."""

    kind = "stream"

    def __init__(self, config: Any, coalescer: Coalescer, source: Any, local: bool = True):
        super().__init__(config, coalescer, source if local else None)
        self.src, self.local = source, local
        self.marks: deque[tuple[float, Any]] = deque()  # (queued at, position), in order
        self.covered_before = 0.0  # wall-clock: changes queued before this are indexed
        self._seen_commits = 0
        self.gaps = 0  # binlog positions found purged (each closed by a reconcile)
        self.committed = 0

    @property
    def base_dir(self) -> Any:
        """From the source's settings in events mode too (a relative SQLite file is found
        from the config file's folder, not the watcher's working directory)."""
        return getattr(getattr(self.src, "settings", None), "base_dir", ".")

    def reader(self) -> Any:
        home = getattr(getattr(self.src, "settings", None), "home", ".freshrag")
        if self.mode == "binlog":
            from connectors.binlog import BinlogReader

            return BinlogReader(self.config, home, self.base_dir)
        if self.mode == "logical":
            from connectors.pg_logical import LogicalReader

            return LogicalReader(self.config, self.base_dir)
        from connectors.changelog import ChangelogReader

        return ChangelogReader(self.config, self.base_dir)

    def follow(self) -> None:
        reader = self.reader()
        try:
            reader.open()
            self.marks.clear()  # uncommitted positions are re-read from the reader's start
            if getattr(reader, "gap", False):
                reader.gap = False
                self.gaps += 1
                self._rescan()  # the purged stretch: a poll and a reconcile catch it up
            self._connected(self.connections + 1)
            while not self._stop.is_set():
                self._commit(reader)
                for pos, keys in reader.poll():
                    if keys:
                        self.coalescer.add(self.source, keys)
                    self.marks.append((time.time(), pos))  # after add: see tick()
                if getattr(reader, "gap", False):  # purged while reading
                    reader.gap = False
                    self.gaps += 1
                    self._rescan()
        finally:
            reader.close()

    def _connected(self, n: int) -> None:
        """A stream resumes where it was committed: a reconnect loses nothing, so only a
        first connection that came after the start-up poll needs a rescan."""
        self.connections += 1
        if not self.listening.is_set():
            log.info("%s: following %s changes", self.source, self.mode)
        self.listening.set()
        if self.late:
            self.late = False
            self._rescan()

    def lost(self) -> None:
        """Nothing is lost on a failed stream (it resumes from its committed position)."""

    def tick(self) -> None:
        """Between batches (the watcher's thread): after a covering pass, every change queued
        before its cut (the ledger's watermark) is indexed."""
        if self.local:
            commits = int(getattr(self.src, "covering_commits", 0))
            if commits == self._seen_commits:
                return
            self._seen_commits = commits
        watermark = self.src.ledger.source_state(self.source).watermark
        if watermark is not None:
            self.covered_before = max(self.covered_before, float(watermark))

    def _commit(self, reader: Any) -> None:
        covered = self.covered_before
        done = [pos for t, pos in self.marks if t < covered]
        if not done:
            return
        reader.commit(done)  # raises: the marks stay, retried after the reconnect
        for _ in done:
            self.marks.popleft()
        self.committed += len(done)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
