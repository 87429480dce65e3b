"""Local mode's record in Prefect, off the hot path: batches that changed something (or failed),
each source's start-up reconcile, and a periodic heartbeat per source with counts since the last.

The watcher applies a batch first and hands its report here; one recorder thread writes the
record (a task run of a long-lived `freshrag-watch` flow run, or an event). While Prefect is
unreachable the records wait in a bounded queue, the thread probes with backoff, and nothing in
the watcher's loop waits for Prefect.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from flows.batching import Batch
from flows.link import Link, api_url, probe
from flows.watch import APPLIED, changed, resource
from freshrag.model import SyncReport

log = logging.getLogger("freshrag.watch")
HEARTBEAT_S = 600.0  # one heartbeat per source this often, with the counts since the last
CAPACITY = 1000  # records held while Prefect is away; older ones are dropped (and counted)
HEARTBEAT = "freshrag.watch.heartbeat"


@dataclass
class Entry:
    """One record: a batch applied (or failed), or a heartbeat."""

    source: str
    label: str
    summary: str
    payload: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)
    failure: str | None = None
    heartbeat: bool = False


@dataclass
class _Counts:
    since: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)
    batches: int = 0
    keys: int = 0
    rescans: int = 0
    recorded: int = 0


class Unreachable(RuntimeError):
    """Prefect stopped answering in the middle of a session."""


class Recorder:
    """Records what the watcher applied, in a thread of its own (see the module docstring)."""

    def __init__(self, how: str, label: str, sources: list[str],
                 heartbeat_s: float = HEARTBEAT_S, session_batches: int = 1000,
                 session_seconds: float = 3600.0, capacity: int = CAPACITY,
                 server: Any = None):
        if how not in ("task", "event"):
            raise ValueError(f"record must be task or event, not {how!r}")
        self.how, self.label, self.heartbeat_s = how, label, heartbeat_s
        self.session_batches, self.session_seconds = session_batches, session_seconds
        self.link = Link("recording in Prefect")
        self.server = server  # flows.prefect_api.TemporaryServer to wait for, if any
        self._queue: collections.deque[Entry] = collections.deque()
        self._capacity = capacity
        self._counts = {name: _Counts() for name in sources}
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.dropped = 0  # records lost to a full queue during an outage (reported, not silent)
        self._dropped_told = 0
        self.recorded = 0  # records written (tests read it)
        self.sessions = 0
        # Set once the first session is open (or Prefect found unreachable): Prefect's start-up
        # (imports, the first flow run, an ephemeral server) is done before the watcher says
        # ready, so it does not compete with the first change for the CPU.
        self.primed = threading.Event()

    # the watcher's side: never blocks on Prefect ----------------------------------------------
    def submit(self, batch: Batch, report: SyncReport | None, failure: str | None = None,
               startup: bool = False) -> bool:
        """Count the batch; queue a record if it changed something, failed, or was a source's
        start-up reconcile. Returns whether a record was queued."""
        with self._cond:
            counts = self._counts.setdefault(batch.source, _Counts())
            counts.batches += 1
            counts.keys += len(batch.keys or [])
            counts.rescans += batch.keys is None
            if failure is None and not startup and (report is None or not changed(report)):
                return False
            counts.recorded += 1
            if report is not None:
                summary, payload, errors = report.summary(), report.to_json(), report.errors
            else:
                summary, payload, errors = f"failed: {failure}", {}, []
            self._put(Entry(batch.source, batch.label, summary, {"keys": len(batch.keys or []),
                                                                 **payload}, errors, failure))
            return True

    def _put(self, entry: Entry) -> None:
        if len(self._queue) >= self._capacity:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(entry)
        self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    # lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        _quiet_run_loggers()
        self._thread = threading.Thread(target=self._run, name="freshrag-record", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued if Prefect answers (up to `timeout` s), then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        left = self.pending()
        if left:
            log.warning("%d batch record(s) not written to Prefect (%s); the index is not "
                        "affected", left, "unreachable" if self.link.up is False else "timed out")

    # the recorder thread -------------------------------------------------------------------------
    def _due_heartbeat_in(self) -> float:
        now = time.monotonic()
        return max(0.0, min((c.started + self.heartbeat_s - now for c in self._counts.values()),
                            default=self.heartbeat_s))

    def _has_work(self) -> bool:
        return bool(self._queue) or self._due_heartbeat_in() == 0

    def _run(self) -> None:
        if self.server is not None:  # started by the watcher just now: wait until it answers
            reason = self.server.wait_ready()
            if reason is not None:
                self.link.failed(reason)
        while True:
            with self._cond:
                while not self._has_work() and not self._closing and self.primed.is_set():
                    self._cond.wait(max(0.05, self._due_heartbeat_in()))
                if self._closing and (not self._queue or self.link.up is False):
                    return
            if not self.link.ready():
                self.primed.set()
                with self._cond:
                    if not self._closing:
                        self._cond.wait(max(0.05, self.link.wait_s()))
                continue
            try:
                if self.how == "task":
                    watch_session(self, self.label)
                else:
                    self.pump(_emit_entry)
            except Exception as exc:  # noqa: BLE001 - Prefect down or slow: retry later
                self.link.failed(f"{type(exc).__name__}: {exc}"[:300])
            finally:
                self.primed.set()

    def _heartbeats(self) -> None:
        now = time.monotonic()
        with self._cond:
            for source, c in self._counts.items():
                if now - c.started < self.heartbeat_s:
                    continue
                since = time.strftime("%H:%M:%S", time.localtime(c.since))
                line = (f"{c.batches} batch(es) since {since} ({c.keys} key(s), {c.rescans} "
                        f"rescan(s)); {c.recorded} recorded, {c.batches - c.recorded} changed "
                        "nothing")
                if self.dropped > self._dropped_told:
                    line += f"; {self.dropped - self._dropped_told} record(s) dropped while " \
                            "Prefect was unreachable"
                    self._dropped_told = self.dropped
                payload = {"batches": c.batches, "keys": c.keys, "rescans": c.rescans,
                           "recorded": c.recorded, "since": c.since, "dropped": self.dropped}
                self._counts[source] = _Counts()
                self._queue.append(Entry(source, "heartbeat", line, payload, heartbeat=True))

    def _take(self, timeout: float) -> Entry | None:
        with self._cond:
            if not self._queue and not self._closing:
                self._cond.wait(timeout)
            return self._queue.popleft() if self._queue else None

    def pump(self, write: Any) -> int:
        """Write records until the session's limits (or close() with the queue empty); raises
        Unreachable, the record put back first, when Prefect stops answering."""
        self.link.ok()
        self.sessions += 1
        if self.how == "task":
            import prefect.task_engine  # noqa: F401 - the first task run's imports, done now
        self.primed.set()
        started, done = time.monotonic(), 0
        while done < self.session_batches and time.monotonic() - started < self.session_seconds:
            self._heartbeats()
            entry = self._take(0.5)
            if entry is None:
                if self._closing:
                    return done
                continue
            reason = probe(api_url())
            if reason is not None:
                with self._cond:
                    self._queue.appendleft(entry)
                raise Unreachable(reason)
            try:
                write(entry)
            except Exception as exc:  # noqa: BLE001 - a failed batch is recorded as failed
                if entry.failure is None:
                    log.debug("recording %s failed: %s", entry.label, exc)
            done += 1
            self.recorded += 1
        return done


def _quiet_run_loggers() -> None:
    """The watcher prints each batch once (freshrag.watch); what the recorder logs into runs
    goes to the Prefect API only, not the console a second time."""
    for name in ("prefect.task_runs", "prefect.flow_runs", "prefect.task_engine",
                 "prefect.flow_engine"):
        logging.getLogger(name).propagate = False


class BatchFailed(RuntimeError):
    """A batch the watcher could not apply (it retries it); its record is a failed task run."""


def _emit_entry(entry: Entry) -> None:
    emit_event(HEARTBEAT if entry.heartbeat else APPLIED, resource=resource(entry.source),
               payload={"label": entry.label, "summary": entry.summary, **entry.payload,
                        **({"failure": entry.failure} if entry.failure else {})})


@task(name="watch-batch", task_run_name="{source}: {label}", cache_policy=NO_CACHE, retries=0)
def record_batch(source: str, label: str, summary: str, errors: list[dict[str, str]],
                 failure: str | None) -> str:
    """A batch the watcher applied in-process (or a heartbeat), as a task run."""
    logger = get_run_logger()
    logger.info("%s (%s): %s", source, label, summary)
    for err in errors[:20]:
        logger.warning("%s: %s: %s", source, err["key"], err["error"])
    if failure is not None:
        raise BatchFailed(failure)
    return summary


def _record_entry(entry: Entry) -> None:
    record_batch(entry.source, entry.label, entry.summary, entry.errors, entry.failure)


@flow(name="freshrag-watch", flow_run_name="watch {label}", validate_parameters=False)
def watch_session(recorder: Recorder, label: str) -> int:
    """A stretch of the watcher's life: one task run per batch that changed something (and per
    heartbeat); rolls over after `session_batches` records or `session_seconds`."""
    return recorder.pump(_record_entry)
