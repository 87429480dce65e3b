"""The watcher service: follow sources and apply debounced batches (local) or emit events."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from connectors import Source, build_source
from flows.batching import Batch, Coalescer
from flows.feeds import FolderFeed, OverflowHook
from flows.table_feeds import TableFeeds
from freshrag.config import Settings
from freshrag.engine import Engine
from freshrag.index import IndexMisconfigured
from freshrag.model import SyncReport

log = logging.getLogger("freshrag.watch")
CHANGED = "freshrag.source.changed"  # events mode: deployment triggers turn it into sync runs
APPLIED = "freshrag.batch.applied"  # local mode, record="event": one per batch applied
KEYS_PER_EVENT = 1000  # well under Prefect's maximum event size
OnBatch = Callable[[Batch, SyncReport | None], None]


def resource(source: str) -> dict[str, str]:
    return {"prefect.resource.id": f"freshrag.source.{source}",
            "prefect.resource.name": source, "freshrag.source.name": source}


@dataclass
class WatchOptions:
    mode: str = "local"  # local: apply in-process; events: emit freshrag.source.changed
    record: str = "task"  # local mode: task (run per batch in a watch flow run) | event | off
    quiet: float = 0.1  # seconds without a change that close a batch
    max_delay: float = 1.0  # a batch never waits longer than this after its first change
    poll: float = 5.0  # seconds between polls of tables that set no poll_interval of their own
    session_batches: int = 1000  # a watch flow run rolls over after this many batches ...
    session_seconds: float = 3600.0  # ... or this long, so no run grows without bound

    def __post_init__(self) -> None:
        if self.mode not in ("local", "events"):
            raise ValueError(f"mode must be local or events, not {self.mode!r}")
        if self.record not in ("task", "event", "off"):
            raise ValueError(f"record must be task, event or off, not {self.record!r}")


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
                feed = FolderFeed(name, root, Path(self.settings.home).resolve(), self.coalescer)
                feed.start()
                self.feeds.append(feed)
            else:
                self.tables.add(name, src, self.settings.source(name),
                                local=self.options.mode == "local")
        self.tables.start()  # ConfigError when a notify trigger cannot be installed
        for name in self.names:
            self.coalescer.rescan(name)
        self._startup = set(self.names)
        log.info("watching %s (%s mode)", ", ".join(self.names), self.options.mode)

    def stop(self) -> None:
        """Finish the batch in hand, apply what is already queued, then return from run()."""
        self._stop.set()
        with self.coalescer._cond:
            self.coalescer._cond.notify_all()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Start, then loop until stop() or SIGINT/SIGTERM; in local mode with record="task"
        each stretch of the loop is a `freshrag-watch` flow run and each batch its task run."""
        self._install_signals()
        try:
            self.start()
            if self.options.mode == "local" and self.options.record == "task":
                while not self.stopping:
                    watch_session(self, label=", ".join(self.names))
            else:
                self.loop()
        finally:
            self.shutdown()
        if self.fatal is not None:
            if self._engine is not None:
                self._engine.close()
            raise self.fatal

    def shutdown(self) -> None:
        for feed in self.feeds:
            feed.stop()
        self.feeds.clear()
        self.tables.stop()
        self._hook.uninstall()
        if self.options.mode == "events" or self.options.record == "event":
            from prefect.events.worker import EventsWorker

            EventsWorker.drain_all(timeout=10)
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

    def _reclaim_sigterm(self) -> None:
        """A flow run swaps SIGTERM for an abort; the watcher wants its graceful stop back."""
        if self._handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handler)

    def _restore_signals(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    # the loop ------------------------------------------------------------------------------------
    def loop(self, max_batches: int | None = None, max_seconds: float | None = None) -> int:
        """Take and handle batches until stopped or a limit is reached; returns batches handled."""
        started, done = time.monotonic(), 0
        while not self.stopping:
            self._health()
            batch = self.coalescer.take(timeout=0.25)
            if batch is not None:
                self._handle(batch)
                done += 1
            if (max_batches is not None and done >= max_batches) or (
                    max_seconds is not None and time.monotonic() - started >= max_seconds):
                return done
        for batch in self.coalescer.drain():  # queued before the stop: cheap, keep them
            if batch.keys is not None:
                self._handle(batch)
                done += 1
        return done

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
        try:
            if self.options.mode == "events":
                announce(batch)
            elif self.options.record == "task":
                report = apply_batch(self, batch)
            else:
                report = self.apply(batch)
                if self.options.record == "event":
                    emit_event(APPLIED, resource=resource(batch.source),
                               payload={"keys": len(batch.keys or []), **report.to_json()})
        except IndexMisconfigured as exc:  # retrying cannot help: stop, the CLI exits 2
            self.fatal = exc
            self.stop()
            return
        except Exception as exc:  # noqa: BLE001 - the watcher outlives a failed batch
            log.error("%s: batch (%s) failed: %s; will retry", batch.source, batch.label, exc)
            if batch.keys is None:
                self.coalescer.rescan(batch.source)
            else:
                self.coalescer.add(batch.source, batch.keys)
            self._stop.wait(2.0)
            return
        self.batches += 1
        self._startup.discard(batch.source)
        if not self._startup:
            self.ready.set()
        if self.on_batch is not None:
            self.on_batch(batch, report)

    def apply(self, batch: Batch) -> SyncReport:
        """One batch through the engine: the index reflects the source as of the batch's cut."""
        report = self.engine.sync(batch.source, batch.keys, observed_at=batch.cut)
        log.info("%s (%s): %s", batch.source, batch.label, _line(report))
        return report


def _line(report: SyncReport) -> str:
    from flows.sync import summary_line

    return summary_line(report)


def announce(batch: Batch) -> None:
    """Events mode: one `freshrag.source.changed` per batch (split when it has many keys)."""
    parts: list[list[str] | None] = [None] if batch.keys is None else [
        batch.keys[i:i + KEYS_PER_EVENT] for i in range(0, len(batch.keys), KEYS_PER_EVENT)]
    for keys in parts:
        emit_event(CHANGED, resource=resource(batch.source),
                   payload={"keys": keys, "observed_at": batch.cut})
    log.info("%s: announced %s", batch.source, batch.label)


@task(name="watch-batch", task_run_name="{batch.source}: {batch.label}", cache_policy=NO_CACHE)
def apply_batch(watcher: Watcher, batch: Batch) -> SyncReport:
    """A batch applied in-process, recorded as a task run of the current watch flow run."""
    report = watcher.apply(batch)
    get_run_logger().info("%s (%s): %s", batch.source, batch.label, _line(report))
    for err in report.errors[:20]:
        get_run_logger().warning("%s: %s: %s", batch.source, err["key"], err["error"])
    return report


@flow(name="freshrag-watch", flow_run_name="watch {label}", validate_parameters=False)
def watch_session(watcher: Watcher, label: str) -> int:
    """A stretch of the watcher's life; rolls over after `session_batches`/`session_seconds`."""
    watcher._reclaim_sigterm()
    return watcher.loop(watcher.options.session_batches, watcher.options.session_seconds)
