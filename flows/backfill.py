"""Backfill fan-out: one source's full sync cut into key ranges, run as Prefect tasks on Dask."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from connectors import SourceError
from flows.driver import interruptible, one_line, prefect_api
from flows.engines import engine_for
from freshrag.chunk import chunk
from freshrag.embed import vectors_for
from freshrag.engine import BATCH_DOCS, Engine
from freshrag.lock import BACKFILL, RUN_MARK, SourceBusy, held, lane
from freshrag.model import Element, Item, SyncReport, content_hash
from freshrag.parse import ParseError

log = logging.getLogger("freshrag.backfill")
RANGE_WAIT_S = 3600.0  # a range waits this long for live changes to let it write
NO_WORKER_S = 60.0  # a cluster without a worker this long: the backfill stops (Dask would wait)
RANGES_PER_WORKER = 4  # enough ranges that a slow one does not leave a worker idle
# this module as the process loaded it: a cluster's long-lived workers must run the same code
CODE = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


class BackfillError(RuntimeError):
    """A backfill cannot start (no cluster at the address, a worker of it that cannot run the
    ranges, one already running); one line."""


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


def pending(engine: Engine, source: str, keys: list[str]) -> dict[str, str]:
    """Read, parse (remembered for the write) and chunk a range: the chunks whose vectors the
    ledger's cache lacks, hash -> text."""
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
    cached = engine.ledger.cached_vectors(engine.embedder.model_id, wanted)
    return {h: t for h, t in wanted.items() if h not in cached}


def warm(engine: Engine, source: str, keys: list[str]) -> int:
    """Read, parse, chunk and embed a range into the vector cache, without the source's lock
    (nothing is written to the index); returns the chunks embedded."""
    report = SyncReport()
    vectors_for(engine.embedder, engine.ledger, pending(engine, source, keys), report)
    return report.embedded


def sync_range(engine: Engine, source: str, keys: list[str],
               embedded: int | None = None) -> SyncReport:
    """One range: the expensive part unlocked (unless a GPU worker already embedded the
    range's `embedded` chunks), then the engine's own keyed sync (which takes the source's
    lock, in the backfill lane, for the write alone)."""
    if embedded is None:
        embedded = warm(engine, source, keys)
    refresh = getattr(engine.index, "refresh", None)
    if refresh is not None:  # see what other processes wrote since this worker's last range
        refresh()
    engine.lock_wait_s = max(engine.lock_wait_s, RANGE_WAIT_S)
    try:
        with lane(BACKFILL):
            report = engine.sync(source, keys)
    finally:  # this range's parses only: another range of this worker may be between steps
        memo, done = _memo(engine), set(keys)
        memo.done = {k: v for k, v in memo.done.items() if k[0] not in done}
    report.embedded, report.reused = report.embedded + embedded, report.reused - embedded
    return report


def _retryable(task: Any, task_run: Any, state: Any) -> bool:
    from flows.sync import _retryable as transient

    return transient(task, task_run, state)


@task(name="backfill-range", task_run_name="range {label} of {source}", retries=2,
      retry_delay_seconds=[1, 5], retry_condition_fn=_retryable, cache_policy=NO_CACHE)
def backfill_range(source: str, keys: list[str], label: str, config: str | None = None,
                   home: str | None = None, gpu: bool = False) -> SyncReport:
    """Sync one key range in this worker process (its engine, and model, built once); with
    `gpu`, a GPU worker of the cluster embeds the range's chunks."""
    engine, lock = engine_for(config, home)
    if not gpu:
        with lock:
            return sync_range(engine, source, keys)
    from flows.cluster import embed_remote

    with lock:
        misses = pending(engine, source, keys)
    # not under the engine's lock: while this range waits, this worker may run another one
    done = embed_remote(config, home, misses, f"{source}-{label}") if misses else None
    embedded = done[1] if done else (None if misses else 0)  # None: no GPU worker left
    with lock:
        report = sync_range(engine, source, keys, embedded)
    if done is not None:
        get_run_logger().info("%d chunk(s) embedded on GPU worker %s", done[1], done[0])
    return report


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


def run(source: str, workers: int | None = None, address: str | None = None,
        config: str | None = None, home: str | None = None) -> SyncReport:
    """The backfill of `source`: a Prefect flow whose range tasks run on Dask."""
    with interruptible(), one_line(BackfillError), contextlib.ExitStack() as stack:
        gpus: list[str] = []
        if address:  # refused before a Prefect server starts when the cluster cannot do it
            from flows.cluster import checked, connected, reporting_to

            client = stack.enter_context(connected(address))
            gpus = checked(client, address, config, home, source)
        api_url = stack.enter_context(prefect_api(_home(config, home) / "prefect-server.log"))
        if address:
            stack.enter_context(reporting_to(client, address, api_url))
        runner = stack.enter_context(cluster(workers, address))
        report: SyncReport = backfill.with_options(task_runner=runner)(
            source, workers or 2, config, home, gpus)
        return report


def _home(config: str | None, home: str | None) -> Path:
    from flows.engines import settings_of

    return Path(settings_of(config, home).home)


@flow(name="freshrag-backfill", flow_run_name="backfill {source}", log_prints=True)
def backfill(source: str, workers: int = 2, config: str | None = None,
             home: str | None = None, gpus: list[str] | None = None) -> SyncReport:
    """A full sync of `source` in key ranges on the flow's task runner, then one short full
    reconcile (what changed meanwhile; the source's cursor, signature and state). With
    `gpus` (workers declaring a GPU), those embed every range's chunks."""
    logger = get_run_logger()
    started = time.time()
    engine, lock = engine_for(config, home)
    report = SyncReport()
    with _running(engine, source):
        with lock:
            ranges = plan(engine, source, workers)
        logger.info("%s: %d document(s) in %d range(s)", source, sum(map(len, ranges)),
                    len(ranges))
        if gpus:
            logger.info("%s: the GPU worker(s) %s embed every range", source, ", ".join(gpus))
        futures = [backfill_range.submit(source, keys, f"{n}/{len(ranges)}", config, home,
                                         bool(gpus)) for n, keys in enumerate(ranges, 1)]
        for n, fut in enumerate(futures, 1):
            part = _result(fut)
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


def _result(fut: Any) -> SyncReport:
    """A range's report; BackfillError when the cluster has had no worker for NO_WORKER_S
    (Dask would wait for one forever)."""
    client: Any = getattr(getattr(fut, "wrapped_future", None), "client", None)
    alone_since: float | None = None
    while True:
        try:
            part: SyncReport = fut.result(timeout=None if client is None else 5)
            return part
        except TimeoutError:
            if client is None:
                raise
        if client.scheduler_info(n_workers=-1)["workers"]:
            alone_since = None
            continue
        alone_since = alone_since or time.monotonic()
        if time.monotonic() - alone_since > NO_WORKER_S:
            raise BackfillError(f"the Dask cluster at {client.scheduler.address} has had no "
                                f"worker for {NO_WORKER_S:.0f} s; the ranges written are kept, "
                                "the next sync does the rest")


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
