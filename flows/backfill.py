"""Backfill fan-out: one source's full sync cut into key ranges, run as Prefect tasks on Dask."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from connectors import SourceError
from flows.engines import engine_for
from freshrag.chunk import chunk
from freshrag.engine import BATCH_DOCS, Engine
from freshrag.lock import BACKFILL, RUN_MARK, SourceBusy, backfill_running, held, lane
from freshrag.model import Element, Item, SyncReport, content_hash
from freshrag.parse import ParseError

log = logging.getLogger("freshrag.backfill")
RANGE_WAIT_S = 3600.0  # a range waits this long for live changes to let it write
EPHEMERAL_START_S = 180  # a loaded machine starts Prefect's temporary server slowly
RANGES_PER_WORKER = 4  # enough ranges that a slow one does not leave a worker idle


class BackfillError(RuntimeError):
    """A backfill cannot start (no cluster at the address, one already running); one line."""


# planning ---------------------------------------------------------------------------------------
def _order(engine: Engine, source: str, keys: list[str]) -> list[str]:
    """Keys in the source's key order: a table's typed primary key (so a range is a key range,
    as the reconcile cuts them), a folder's relative paths."""
    src = engine.source(source)
    kinds = getattr(src, "key_kinds", None)
    if kinds:
        from connectors import sql_util as su

        def typed(key: str) -> tuple[int, Any]:
            try:
                return (0, su.decode_key(key, kinds))
            except ValueError:
                return (1, key)
        with contextlib.suppress(TypeError):
            return sorted(keys, key=typed)
    return sorted(keys)


def plan(engine: Engine, source: str, workers: int, size: int | None = None) -> list[list[str]]:
    """The keys a full sync would visit (changed against the ledger, gone, or all of them when
    the chunking changed), in key order, cut into contiguous ranges."""
    src = engine.source(source)
    known = engine.ledger.fingerprints(source)
    keys = {c.key for c in src.scan(known)}
    if known and engine.ledger.pipeline(source) != engine.pipeline_signature():
        keys |= set(known)
    ordered = _order(engine, source, list(keys))
    if not ordered:
        return []
    size = size or max(1, min(BATCH_DOCS, math.ceil(len(ordered) / (workers * RANGES_PER_WORKER))))
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def live_keys(engine: Engine, source: str) -> list[str] | None:
    """For the watcher's rescan of `source` while a backfill of it runs: only the documents
    already indexed that changed or left (the rest are the backfill's ranges). None: no
    backfill in flight, rescan in full."""
    if backfill_running(engine.ledger, source) is None:
        return None
    known = engine.ledger.fingerprints(source)
    keys = [c.key for c in engine.source(source).scan(known) if c.key in known]
    log.info("%s: a backfill is in flight; the rescan takes the %d indexed document(s) that "
             "changed, the backfill the rest", source, len(keys))
    return keys


# one range, in a worker -----------------------------------------------------------------------
class _Memo:
    """The engine's parser, remembering each range's parses so the write step (under the
    source's lock) does not parse again what the unlocked step parsed."""

    def __init__(self, parser: Any):
        self.inner = parser
        self.done: dict[tuple[str, str], list[Element]] = {}

    def parse(self, item: Item) -> list[Element]:
        key = (item.key, content_hash(item.text if item.text is not None else item.data))
        if key not in self.done:
            self.done[key] = self.inner.parse(item)
        return self.done[key]

    def close(self) -> None:
        self.done.clear()
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def _memo(engine: Engine) -> _Memo:
    if not isinstance(engine.parser, _Memo):
        engine.parser = _Memo(engine.parser)
    return engine.parser


def warm(engine: Engine, source: str, keys: list[str]) -> int:
    """Read, parse, chunk and embed a range into the vector cache, without the source's lock
    (nothing is written to the index); returns the chunks embedded."""
    src, memo = engine.source(source), _memo(engine)
    wanted: dict[str, str] = {}
    for cand in src.candidates(keys):
        if cand.fingerprint is None or cand.error is not None or cand.skipped is not None:
            continue
        try:
            item = src.read(cand.key)
            chunks = chunk(memo.parse(item), engine.embedder.count_tokens, engine.chunk_sizes())
        except (SourceError, ParseError):
            continue  # the locked step meets it again and records it
        wanted.update((c.hash, c.text) for c in chunks)
    model = engine.embedder.model_id
    misses = [h for h in wanted if h not in engine.ledger.cached_vectors(model, wanted)]
    if misses:
        vectors = engine.embedder.embed([wanted[h] for h in misses])
        engine.ledger.cache_vectors(model, dict(zip(misses, vectors, strict=True)))
    return len(misses)


def sync_range(engine: Engine, source: str, keys: list[str]) -> SyncReport:
    """One range: the expensive part unlocked, then the engine's own keyed sync (which takes
    the source's lock, in the backfill lane, for the write alone)."""
    embedded = warm(engine, source, keys)
    refresh = getattr(engine.index, "refresh", None)
    if refresh is not None:  # see what other processes wrote since this worker's last range
        refresh()
    engine.lock_wait_s = max(engine.lock_wait_s, RANGE_WAIT_S)
    try:
        with lane(BACKFILL):
            report = engine.sync(source, keys)
    finally:
        _memo(engine).done.clear()
    report.embedded, report.reused = report.embedded + embedded, report.reused - embedded
    return report


def _retryable(task: Any, task_run: Any, state: Any) -> bool:
    from flows.sync import _retryable as transient

    return transient(task, task_run, state)


@task(name="backfill-range", task_run_name="range {label} of {source}", retries=2,
      retry_delay_seconds=[1, 5], retry_condition_fn=_retryable, cache_policy=NO_CACHE)
def backfill_range(source: str, keys: list[str], label: str, config: str | None = None,
                   home: str | None = None) -> SyncReport:
    """Sync one key range in this worker process (its engine, and model, built once)."""
    engine, lock = engine_for(config, home)
    with lock:
        return sync_range(engine, source, keys)


# the flow ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def cluster(workers: int | None, address: str | None) -> Iterator[Any]:
    """A DaskTaskRunner on a LocalCluster of `workers` processes (closed on the way out, Ctrl-C
    included), or on the scheduler at `address`."""
    from prefect_dask import DaskTaskRunner

    if address:
        yield DaskTaskRunner(address=address)
        return
    from distributed import LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)
    local = LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True,
                         dashboard_address=":0", silence_logs=logging.ERROR)
    try:
        yield DaskTaskRunner(address=local.scheduler_address)  # a cluster object would be
        # pickled with every task (the flow run context carries the task runner)
    finally:
        _close(local)


def _close(local: Any) -> None:
    """Close the workers' engines (their parse children) then the cluster, quietly."""
    from distributed import Client

    from flows.engines import close_all

    with contextlib.suppress(Exception), Client(local, set_as_default=False) as client:
        client.run(close_all)
    logging.getLogger("distributed").setLevel(logging.CRITICAL)  # shutdown chatter
    local.close()


def check_address(address: str, timeout_s: float = 10.0) -> None:
    """Raise BackfillError unless a Dask scheduler answers at `address`."""
    from distributed import Client

    try:
        with Client(address, timeout=timeout_s, set_as_default=False):
            return
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise BackfillError(f"--cluster {address}: no Dask scheduler answers there "
                            f"({reason})") from exc


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """The Prefect API the flow and every worker report to: PREFECT_API_URL, else one
    temporary server started here (Prefect's ephemeral mode would start one per worker
    process), which the worker processes inherit."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = PREFECT_API_URL.value()
    if url:
        yield url
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start(timeout=EPHEMERAL_START_S)
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def _children(pid: int) -> list[int]:
    """Every living descendant of `pid` (Linux /proc), deepest first."""
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            kids.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(
                int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out[::-1]


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C (or SIGTERM) during a backfill: stop every process it started (the workers,
    their parse children, Prefect's temporary server) and exit 130. Raising through Prefect's
    and Dask's threads instead can leave the command waiting on them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        print("freshrag: backfill interrupted; stopping its workers (the ranges written are "
              "kept, the next sync does the rest)", file=sys.stderr, flush=True)
        procs = _children(os.getpid())
        for sig, pause in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
            for pid in procs:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists()
                                                      for p in _children(os.getpid())):
                time.sleep(0.1)
            for pid in procs:  # reap our own children
                with contextlib.suppress(OSError):
                    os.waitpid(pid, os.WNOHANG)
        os._exit(130)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(source: str, workers: int | None = None, address: str | None = None,
        config: str | None = None, home: str | None = None) -> SyncReport:
    """The backfill of `source`: a Prefect flow whose range tasks run on Dask."""
    if address:
        check_address(address)
    with _interruptible(), prefect_api(), cluster(workers, address) as runner:
        report: SyncReport = backfill.with_options(task_runner=runner)(
            source, workers or 2, config, home)
        return report


@flow(name="freshrag-backfill", flow_run_name="backfill {source}", log_prints=True)
def backfill(source: str, workers: int = 2, config: str | None = None,
             home: str | None = None) -> SyncReport:
    """A full sync of `source` in key ranges on the flow's task runner, then one short full
    reconcile (what changed meanwhile; the source's cursor, signature and state)."""
    logger = get_run_logger()
    started = time.time()
    engine, lock = engine_for(config, home)
    report = SyncReport()
    with _running(engine, source):
        with lock:
            ranges = plan(engine, source, workers)
        logger.info("%s: %d document(s) in %d range(s)", source, sum(map(len, ranges)),
                    len(ranges))
        futures = [backfill_range.submit(source, keys, f"{n}/{len(ranges)}", config, home)
                   for n, keys in enumerate(ranges, 1)]
        for n, fut in enumerate(futures, 1):
            part = fut.result()
            report.merge(part)
            logger.info("%s: range %d/%d done (%d chunk(s) written)", source, n, len(ranges),
                        part.written)
        with lock:  # every range is chunked as configured now: the final sync need not again
            engine.ledger.set_pipeline(source, engine.pipeline_signature(source))
            final = engine.sync(source)
            # the workers' writes are not this process's: fold them into the index's own
            # full-text (and ANN) indexes now, as a plain full sync does at its end
            engine.index.optimize()
        done = report.added + report.updated + report.renamed + report.touched
        final.unchanged = max(0, final.unchanged - done)  # the ranges' documents, counted once
        report.merge(final)
    report.seconds = time.time() - started
    logger.info("%s backfilled: %d chunk(s) written in %.1f s", source, report.written,
                report.seconds)
    return report


@contextlib.contextmanager
def _running(engine: Engine, source: str) -> Iterator[None]:
    """Mark the backfill in flight for its whole length (a lease of its own, not the source's
    writer lock: live changes keep writing); a second backfill of the source is refused."""
    try:
        mark = held(engine.ledger, f"{source}{RUN_MARK}", wait_s=0.0)
        mark.__enter__()
    except SourceBusy as exc:
        who = str(exc).split(" by ", 1)[-1].split(";")[0]
        raise BackfillError(f"source {source!r} is already being backfilled by {who}") from exc
    try:
        yield
    finally:
        mark.__exit__(None, None, None)
