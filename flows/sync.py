"""The `sync` flow: the engine in batched, retried tasks, one run per source, a summary artifact."""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from flows.engines import checkout, engine_for, settings_of
from flows.table_feeds import trigger_warning
from freshrag.config import ConfigError
from freshrag.index import IndexMisconfigured
from freshrag.model import SyncReport

BATCH_KEYS = 500  # keys per task run; a reconcile smaller than this is one engine call
LEASE_S = 60.0  # the per-source slot of a crashed run frees itself this long after its death


def slug(source: str) -> str:
    """A source name as Prefect keys want it: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", source.lower()).strip("-") or "source"


def limit_name(source: str) -> str:
    """The global concurrency limit that keeps one run per source at a time."""
    return f"freshrag-source-{source}"


def artifact_key(source: str) -> str:
    return f"freshrag-sync-{slug(source)}"


_LIMITS: set[str] = set()  # limits this process has seen exist (a served process asks once)


def ensure_limit(name: str, limit: int = 1) -> None:
    """Create the global concurrency limit `name` unless it exists (idempotent, race-safe)."""
    if name in _LIMITS:
        return
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit))
    _LIMITS.add(name)


def _retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient failures (index, I/O); never a configuration error."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - an unreadable result is treated as transient
        return True
    return not isinstance(exc, ConfigError | KeyError | IndexMisconfigured)


@task(name="detect", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def detect(source: str, config: str | None = None, home: str | None = None) -> list[str]:
    """Keys that may have changed (a cheap stat scan against the ledger), without reading them."""
    engine, lock = engine_for(config, home)
    with lock:
        known = engine.ledger.fingerprints(source)
        return [c.key for c in engine.source(source).scan(known)]


@task(name="apply", task_run_name="apply {source} ({label})", retries=2,
      retry_delay_seconds=[2, 10], retry_condition_fn=_retryable, cache_policy=NO_CACHE)
def apply(source: str, keys: list[str] | None, label: str, observed_at: float | None = None,
          config: str | None = None, home: str | None = None) -> SyncReport:
    """Read, parse, chunk, diff, embed the misses, write and commit: one engine call."""
    engine, lock = engine_for(config, home)
    with lock:
        report = engine.sync(source, keys, observed_at=observed_at)
    get_run_logger().info("%s: %s", source, report.summary())
    for err in report.errors[:20]:
        get_run_logger().warning("%s: %s: %s", source, err["key"], err["error"])
    return report


def markdown(source: str, keys: list[str] | None, report: SyncReport,
             failure: str | None = None) -> str:
    """The run's summary as a markdown table (the artifact the UI shows)."""
    d = report.to_json()
    what = "full reconcile" if keys is None else f"{len(keys)} key(s)"
    lines = [f"### freshrag sync `{source}` ({what})", ""]
    docs, chunks = d["documents"], d["chunks"]
    lines += ["| documents | " + " | ".join(docs) + " |",
              "|---|" + "---|" * len(docs),
              "| | " + " | ".join(str(v) for v in docs.values()) + " |", ""]
    lines += ["| chunks | " + " | ".join(chunks) + " |",
              "|---|" + "---|" * len(chunks),
              "| | " + " | ".join(str(v) for v in chunks.values()) + " |", ""]
    if report.errors:
        lines += ["| key | error |", "|---|---|"]
        lines += [f"| `{e['key']}` | {e['error'].replace('|', '/')} |" for e in report.errors[:200]]
        if len(report.errors) > 200:
            lines.append(f"| ... | {len(report.errors) - 200} more |")
        lines.append("")
    if failure:
        lines += [f"**run failed**: {failure}", ""]
    lines.append(f"took {report.seconds:.2f} s")
    return "\n".join(lines)


def _batches(keys: list[str], size: int = BATCH_KEYS) -> list[list[str]]:
    return [keys[i:i + size] for i in range(0, len(keys), size)]


@flow(name="freshrag-sync", flow_run_name="sync {source}", log_prints=True)
def sync(source: str, keys: list[str] | None = None, observed_at: float | None = None,
         config: str | None = None, home: str | None = None, workers: int | None = None,
         cluster: str | None = None) -> dict[str, Any]:
    """Bring the index in line with `source`: all of it (keys=None) or just `keys`. A full
    sync with `workers` (a local Dask cluster) or `cluster` (a scheduler's address) is a
    backfill in key ranges (flows/backfill.py), as `freshrag sync --workers/--cluster`."""
    logger = get_run_logger()
    started = time.time()
    logger.info("%s: %s", source, checkout(config, home))
    with contextlib.suppress(ConfigError):  # flows do not listen; say when the trigger is gone
        settings = settings_of(config, home)
        warning = trigger_warning(settings.source(source), settings.base_dir)
        if warning:
            logger.warning(warning)
    report = SyncReport()
    name = limit_name(source)
    ensure_limit(name)
    failure: str | None = None
    try:
        if keys is None and (workers or cluster):  # its ranges lock the source one by one
            from flows.backfill import run

            report.merge(run(source, workers, cluster, config, home))
            return report.to_json()
        with concurrency(name, occupy=1, strict=True, lease_duration=LEASE_S):
            if keys is None:
                found = detect(source, config, home)
                logger.info("%s: %d candidate(s) from the scan", source, len(found))
                if len(found) <= BATCH_KEYS:
                    report.merge(apply(source, None, "reconcile", observed_at or started,
                                       config, home))
                    found = []
                plan = _batches(found)
            else:
                plan = _batches(list(dict.fromkeys(keys)))
            for n, batch in enumerate(plan, 1):
                report.merge(apply(source, batch, f"{n}/{len(plan)}",
                                   observed_at or started if keys is None else observed_at,
                                   config, home))
    except BaseException as exc:
        failure = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        report.seconds = time.time() - started
        create_markdown_artifact(markdown(source, keys, report, failure), key=artifact_key(source),
                                 description=f"freshrag sync {source}: {report.summary()}")
    logger.info("%s done: %s", source, report.summary())
    return report.to_json()
