"""The watcher service: follow sources and apply debounced batches (local) or emit events."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from connectors import Source, build_source
from flows.batching import Batch, Coalescer
from flows.feeds import FolderFeed, OverflowHook
from flows.table_feeds import TableFeeds
from freshrag import metrics
from freshrag.canary import CANARY_KEY
from freshrag.config import Settings
from freshrag.engine import Engine
from freshrag.index import IndexMisconfigured
from freshrag.lock import backfill_running
from freshrag.model import SyncReport
from freshrag.trim import trim

log = logging.getLogger("freshrag.watch")
CHANGED = "freshrag.source.changed"  # events mode: deployment triggers turn it into sync runs
APPLIED = "freshrag.batch.applied"  # local mode, record="event": one per batch applied
TIDY_AFTER_IDLE_S = 5.0  # quiet this long: fold new chunks into the index (Watcher._tidy)
PRIME_S = 30.0  # at most this long for the recorder's Prefect start-up before "ready"
OnBatch = Callable[[Batch, SyncReport | None], None]


def resource(source: str) -> dict[str, str]:
    return {"prefect.resource.id": f"freshrag.source.{source}",
            "prefect.resource.name": source, "freshrag.source.name": source}


@dataclass
class WatchOptions:
    mode: str = "local"  # local: apply in-process; events: emit freshrag.source.changed
    # local mode: task (a task run per batch in a watch flow run) | event | off | auto (task
    # when a Prefect API is configured, else off)
    record: str = "auto"
    quiet: float = 0.1  # seconds without a change that close a batch
    max_delay: float = 1.0  # a batch never waits longer than this after its first change
    poll: float = 5.0  # seconds between polls of tables that set no poll_interval of their own
    session_batches: int = 1000  # a watch flow run rolls over after this many batches ...
    session_seconds: float = 3600.0  # ... or this long, so no run grows without bound
    # local mode: after this long without a change, stop the parse worker and unload the model
    # (they start again with the next change, ~1 s); 0 keeps them loaded
    release_after: float = 300.0

    def __post_init__(self) -> None:
        if self.mode not in ("local", "events"):
            raise ValueError(f"mode must be local or events, not {self.mode!r}")
        if self.record not in ("auto", "task", "event", "off"):
            raise ValueError(f"record must be auto, task, event or off, not {self.record!r}")
        if self.release_after < 0:
            raise ValueError(f"release_after must be >= 0, not {self.release_after!r}")


class Watcher:
    """Follows sources; on start reconciles each, then applies or announces each batch."""

    def __init__(self, settings: Settings, sources: list[str], options: WatchOptions | None = None,
                 engine: Engine | None = None, on_batch: OnBatch | None = None):
        self.settings, self.options = settings, options or WatchOptions()
        self.names = sources or [s.name for s in settings.sources]
        for name in self.names:
            settings.source(name)  # ConfigError for an unknown name, before anything starts
        self._engine = engine
        self.on_batch = on_batch
        self.coalescer = Coalescer(self.options.quiet, self.options.max_delay)
        self.feeds: list[FolderFeed] = []
        self.tables = TableFeeds(self.coalescer, self.options.poll)  # polls, notify listeners
        self._stop = threading.Event()
        self.ready = threading.Event()  # set once the start-up reconciles are applied
        self.batches = 0
        self._hook = OverflowHook(self._rescan_all)
        self._previous: dict[int, Any] = {}
        self._handler: Callable[[int, FrameType | None], None] | None = None
        self._startup: set[str] = set()
        self.fatal: BaseException | None = None  # a refused setting: run() stops and raises it
        self.recorder: Any = None  # flows.record.Recorder: local mode's record in Prefect
        self.record = self.options.record  # "auto" until run() decides: task or off
        self.server: Any = None  # flows.prefect_api.TemporaryServer: recording, no API set
        self._api: Any = None  # flows.prefect_api.ConfiguredUrl, asked from run()'s start
        self._opened = False
        self.outbox: Any = None  # flows.outbox.Outbox: events mode's changes until sent
        self.canaries: Any = None  # flows.canary.Canaries: local mode, sources with canary=true
        self._changed_at = time.monotonic()  # the last batch that changed the index
        self.released = False  # idle past release_after: parse worker stopped, model unloaded

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine(self.settings)
        return self._engine

    def _source(self, name: str) -> Source:
        if self.options.mode == "local":
            return self.engine.source(name)
        return build_source(self.settings.source(name), self.settings)

    # lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the feeds first, then queue a reconcile per source: nothing falls in between."""
        self._hook.install()
        for name in self.names:
            src = self._source(name)
            root = getattr(src, "root", None)
            if isinstance(root, Path):
                feed = FolderFeed(name, root, Path(self.settings.home).resolve(), self.coalescer,
                                  folder_attrib=getattr(src, "captures_readers", False))
                feed.start()
                self.feeds.append(feed)
            else:
                self.tables.add(name, src, self.settings.source(name),
                                local=self.options.mode == "local")
        self.tables.start()  # ConfigError when a notify trigger cannot be installed
        for name in self.names:
            self.coalescer.rescan(name)
        self._startup = set(self.names)
        self._start_canaries()
        log.info("watching %s (%s mode)", ", ".join(self.names), self.options.mode)

    def _start_canaries(self) -> None:
        from freshrag.canary import enabled

        wanted = [c.name for c in enabled(self.settings) if c.name in self.names]
        if not wanted:
            return
        if self.options.mode != "local":
            log.warning("canaries (%s) run in local mode only: not run in %s mode",
                        ", ".join(wanted), self.options.mode)
            return
        from flows.canary import Canaries
        from flows.link import api_url

        emit = self.record != "off" and api_url() is not None
        self.canaries = Canaries(self.engine, self.settings, self.names, emit)
        self.canaries.start()

    def stop(self) -> None:
        """Finish the batch in hand, apply what is already queued, then return from run()."""
        self._stop.set()
        with self.coalescer._cond:
            self.coalescer._cond.notify_all()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Warm the hot path, start, then loop until stop() or SIGINT/SIGTERM. Prefect is
        written to by a thread of its own (the recorder, or the outbox in events mode): the loop
        never waits for it, and an unreachable Prefect only pauses the record."""
        self._install_signals()
        try:
            self._open_prefect(wait=False)  # Prefect's own start-up overlaps the warm-up
            if self.options.mode == "local":
                from flows.warm import warm

                log.info("warmed the model, index and parser in %.1f s",
                         warm(self.engine, self.names))
            self._open_prefect(wait=True)  # record=auto: asked beside the warm-up
            self.start()
            self.loop()
        finally:
            try:
                self._close_prefect()
            finally:
                self.shutdown()
        if self.fatal is not None:
            if self._engine is not None:
                self._engine.close()
            raise self.fatal

    def _open_prefect(self, wait: bool) -> None:
        """Start what writes to Prefect: the outbox (events mode) or the recorder. Whether
        record=auto records is asked without importing Prefect here (flows/prefect_api.py);
        with `wait` False nothing waits for that answer (run() asks again after the warm-up).
        Recording without a configured API starts a temporary server of the watcher's own."""
        if self._opened:
            return
        if self.options.mode == "events":
            from flows.outbox import Outbox

            self._opened = True
            self.outbox = Outbox()
            self.outbox.start()
            return
        if self.record == "off":
            self._opened = True
            return
        from flows.prefect_api import NOT_RECORDED, ConfiguredUrl, TemporaryServer

        if self._api is None:
            self._api = ConfiguredUrl()
        if not wait and self.record == "auto" and not self._api.known():
            return
        self._opened = True
        url = self._api.url()
        if self.record == "auto":
            self.record = "task" if url else "off"
            if url is None:
                log.info(NOT_RECORDED)
                return
        if url is None and "prefect" not in sys.modules:  # else Prefect's own ephemeral mode
            self.server = TemporaryServer(Path(self.settings.home) / "prefect-server.log")
            os.environ["PREFECT_API_URL"] = self.server.start()  # read by Prefect's import
            log.info("recording in a temporary Prefect server at %s (its log: %s); set "
                     "PREFECT_API_URL to record in a server that outlives the watcher",
                     self.server.url, self.server.log_path)
        from flows.record import Recorder

        self.recorder = Recorder(self.record, ", ".join(self.names), self.names,
                                 session_batches=self.options.session_batches,
                                 session_seconds=self.options.session_seconds,
                                 server=self.server)
        self.recorder.start()

    def _close_prefect(self) -> None:
        """Write what is queued for Prefect, let its senders flush, stop a temporary server."""
        for part in (self.recorder, self.outbox):
            if part is not None:
                part.close()
        if self.options.mode == "events" or self.record == "event":
            from prefect.events.worker import EventsWorker

            EventsWorker.drain_all(timeout=10)
        if self.server is not None:
            from flows.link import drain_prefect

            drain_prefect()  # while the server still answers
            self.server.stop()
            self.server = None
            os.environ.pop("PREFECT_API_URL", None)

    def shutdown(self) -> None:
        if self.canaries is not None:
            self.canaries.stop()
        for feed in self.feeds:
            feed.stop()
        self.feeds.clear()
        self.tables.stop()
        self._hook.uninstall()
        self._restore_signals()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.stopping:  # a second signal: stop now
                self._restore_signals()
                raise KeyboardInterrupt
            log.warning("signal %d: finishing the batch in hand, then exiting", signum)
            self.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, handler)
        self._handler = handler

    def _restore_signals(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    # the loop ------------------------------------------------------------------------------------
    def loop(self, max_batches: int | None = None, max_seconds: float | None = None) -> int:
        """Take and handle batches until stopped or a limit is reached; returns batches handled."""
        started, done = time.monotonic(), 0
        idle_since, trimmed = started, False
        while not self.stopping:
            self._health()
            batch = self.coalescer.take(timeout=0.25)
            if batch is not None:
                self._handle(batch)
                done += 1
                idle_since = time.monotonic()
                trimmed = False
            elif time.monotonic() - idle_since >= TIDY_AFTER_IDLE_S:
                self._tidy()
                if not trimmed:  # what the batches freed goes back to the system, once
                    if self._engine is not None:  # the runtime's buffers for its largest batch
                        getattr(self._engine.embedder, "trim", lambda: None)()
                    trim()
                    trimmed = True
                idle_since = time.monotonic()
            self._release_if_idle()
            if self.canaries is not None:
                self.canaries.tick(self.ready.is_set())
            if (max_batches is not None and done >= max_batches) or (
                    max_seconds is not None and time.monotonic() - started >= max_seconds):
                return done
        for batch in self.coalescer.drain():  # queued before the stop: cheap, keep them
            if batch.keys is not None:
                self._handle(batch)
                done += 1
        return done

    def _tidy(self) -> None:
        """Quiet for a while: fold the chunks written since into the index's own indexes
        (a sync does it after 200; rows not yet folded in are searched exactly meanwhile)."""
        if self.options.mode != "local" or self._engine is None:
            return
        try:
            if self._engine.tidy_index():
                log.info("folded new chunks into the index")
        except Exception as exc:  # the rows stay searchable; the next quiet spell retries
            log.warning("could not fold new chunks into the index: %s", exc)

    def _release_if_idle(self) -> None:
        """Idle past release_after: give back the parse worker's and the model's memory (an idle
        watcher's largest shares). A poll that changes nothing does not count as work."""
        after = self.options.release_after
        if (self.released or after <= 0 or self._engine is None or self.options.mode != "local"
                or time.monotonic() - self._changed_at < after):
            return
        self.released = True
        try:
            done = self._engine.release()
        except Exception as exc:  # noqa: BLE001 - memory only: the watcher goes on either way
            log.warning("could not release the parse worker and the model: %s", exc)
            return
        if done:
            log.info("idle %.0f s: %s; the next change starts them again", after,
                     " and ".join(done))

    def _health(self) -> None:
        for feed in self.feeds:
            if not feed.healthy():
                feed.restart()
        self.tables.tick()

    def _rescan_all(self) -> None:
        for feed in self.feeds:
            log.warning("%s: event queue overflowed; rescanning", feed.source)
            self.coalescer.rescan(feed.source)

    def _handle(self, batch: Batch) -> None:
        report: SyncReport | None = None
        startup = batch.source in self._startup
        try:
            if self.options.mode == "events":
                if self.outbox is None:  # loop() driven without run(): announce at once
                    from flows.outbox import Outbox

                    self.outbox = Outbox()
                    self.outbox.start()
                self.outbox.add(batch)
            else:
                report = self.apply(batch)
        except IndexMisconfigured as exc:  # retrying cannot help: stop, the CLI exits 2
            self.fatal = exc
            self.stop()
            return
        except Exception as exc:  # noqa: BLE001 - the watcher outlives a failed batch
            log.error("%s: batch (%s) failed: %s; will retry", batch.source, batch.label, exc)
            if self.recorder is not None:
                self.recorder.submit(batch, None, failure=str(exc), startup=startup)
            if batch.keys is None:
                self.coalescer.rescan(batch.source)
            else:
                self.coalescer.add(batch.source, batch.keys)
            self._stop.wait(2.0)
            return
        if report is not None and (startup or changed(report)):
            self._changed_at = time.monotonic()
            self.released = False
        if report is not None:
            # the canary's own rewrite is timed apart (flows/canary.py), not as a user's change
            own = batch.keys is not None and set(batch.keys) == {CANARY_KEY}
            if not own:
                metrics.observe_batch(batch.source, batch.first, report, startup)
            # each batch is logged once; polls that changed nothing only at debug level
            level = logging.INFO if (startup or changed(report)) and not own else logging.DEBUG
            log.log(level, "%s (%s): %s", batch.source, batch.label, report.summary())
            if self.recorder is not None and not own:
                self.recorder.submit(batch, report, startup=startup)
        self.batches += 1
        self._startup.discard(batch.source)
        if not self._startup and not self.ready.is_set():
            if self.recorder is not None:
                self.recorder.primed.wait(PRIME_S)
            self.ready.set()
            log.info("watching %s (%s mode); ready", ", ".join(self.names), self.options.mode)
        if self.on_batch is not None:
            self.on_batch(batch, report)

    def apply(self, batch: Batch) -> SyncReport:
        """One batch through the engine: the index reflects the source as of the batch's cut.
        A rescan while a backfill of the source runs leaves the unindexed rest to it."""
        keys = batch.keys
        if keys is None:
            keys = live_keys(self.engine, batch.source)
        return self.engine.sync(batch.source, keys, observed_at=batch.cut)


def live_keys(engine: Engine, source: str) -> list[str] | None:
    """For a rescan of `source` while a backfill of it runs: only the documents already
    indexed that changed or left (the rest are the backfill's ranges). None: no backfill in
    flight, rescan in full."""
    if backfill_running(engine.ledger, source) is None:
        return None
    known = engine.ledger.fingerprints(source)
    keys = [c.key for c in engine.source(source).scan(known) if c.key in known]
    log.info("%s: a backfill is in flight; the rescan takes the %d indexed document(s) that "
             "changed, the backfill the rest", source, len(keys))
    return keys


def changed(report: SyncReport) -> bool:
    """Did a sync change the index (or fail on something)? A no-op poll did not."""
    return any((report.added, report.updated, report.deleted, report.renamed, report.failed,
                report.written, report.chunks_deleted))

