"""Prometheus metrics: one registry per process, fed once per sync report and per watcher batch."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from freshrag.model import SyncReport

__all__ = ["CONTENT_TYPE_LATEST", "REGISTRY", "HttpMetrics", "observe_batch", "render",
           "serve", "sync_failed", "synced", "unwatch_lag", "watch_canary", "watch_lag",
           "watch_pending"]

REGISTRY = CollectorRegistry(auto_describe=True)

CHANGE = Histogram(
    "freshrag_change_to_searchable_seconds",
    "Watcher: seconds from a batch's first change event to its index write committed, one "
    "observation per document created, updated (renames too) or deleted",
    ["source", "op"], registry=REGISTRY,
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0))
DOCUMENTS = Counter("freshrag_documents", "Documents handled by syncs, by outcome",
                    ["source", "outcome"], registry=REGISTRY)
CHUNKS = Counter("freshrag_chunks", "Chunks handled by syncs: embedded (model calls), reused "
                 "(embedding cache hits), written and deleted (index objects)",
                 ["source", "kind"], registry=REGISTRY)
LAST_SUCCESS = Gauge("freshrag_last_sync_success_timestamp_seconds",
                     "Unix time the last sync of the source completed", ["source"],
                     registry=REGISTRY)
ERRORS = Counter("freshrag_errors", "Errors: document (one item could not be indexed) or sync "
                 "(a whole sync failed, e.g. the index was down)", ["source", "kind"],
                 registry=REGISTRY)
HTTP = Histogram("freshrag_http_request_duration_seconds",
                 "API request latency by route template, method and status",
                 ["route", "method", "status"], registry=REGISTRY)

CANARY = Histogram(
    "freshrag_canary_latency_seconds",
    "Watcher: seconds from writing a source's canary document to finding it through search",
    ["source"], registry=REGISTRY,
    buckets=(0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0))
CANARY_MISSED = Counter("freshrag_canary_missed", "Watcher: canaries rewritten before the "
                        "previous one was found through search", ["source"], registry=REGISTRY)

# status's `freshness.capture` fields exported as gauges (absent when a source has none)
_CAPTURE = {
    "lag_bytes": ("freshrag_capture_lag_bytes", "Change capture: bytes of the server's log "
                  "(binlog, or WAL for a logical slot) past the position the index holds"),
    "retained_wal_bytes": ("freshrag_capture_retained_wal_bytes", "Logical slot: WAL bytes "
                           "the server keeps for the slot (disk held until it advances)"),
    "backlog_rows": ("freshrag_capture_backlog_rows", "Changelog: rows waiting to be indexed"),
}

_OUTCOMES = ("added", "updated", "deleted", "renamed", "unchanged", "touched", "failed",
             "skipped")
_CHUNK_KINDS = (("embedded", "embedded"), ("reused", "reused"), ("written", "written"),
                ("deleted", "chunks_deleted"))


def synced(source: str, report: SyncReport) -> None:
    """One completed sync (any process: CLI, flow run, watcher batch)."""
    for outcome in _OUTCOMES:
        if n := getattr(report, outcome):
            DOCUMENTS.labels(source, outcome).inc(n)
    for kind, attr in _CHUNK_KINDS:
        if n := getattr(report, attr):
            CHUNKS.labels(source, kind).inc(n)
    if report.failed:
        ERRORS.labels(source, "document").inc(report.failed)
    LAST_SUCCESS.labels(source).set(time.time())


def sync_failed(source: str) -> None:
    """A sync that raised instead of returning a report."""
    ERRORS.labels(source, "sync").inc()


def observe_batch(source: str, first: float, report: SyncReport, startup: bool) -> None:
    """A watcher batch just committed; `first` is the monotonic time of its first change.
    The start-up reconcile is not a change the watcher saw happen: it is not observed."""
    if startup:
        return
    elapsed = max(0.0, time.monotonic() - first)
    for op, n in (("create", report.added), ("update", report.updated + report.renamed),
                  ("delete", report.deleted)):
        child = CHANGE.labels(source, op)
        for _ in range(n):
            child.observe(elapsed)


class _Live(Collector):
    """Figures read at scrape time: the watcher's queued keys, and each source's lag."""

    def __init__(self) -> None:
        self.pending: Callable[[], dict[str, int]] | None = None
        self.lag: tuple[Callable[[], Any], Callable[[], Iterable[str]]] | None = None
        self.canary: tuple[Any, float] | None = None  # (settings, since): read at scrape time

    def collect(self) -> Iterable[Metric]:
        if self.pending is not None:
            g = GaugeMetricFamily("freshrag_pending_changes", "Watcher: keys queued, not yet "
                                  "applied (a queued rescan counts 1)", labels=["source"])
            for source, n in sorted(self.pending().items()):
                g.add_metric([source], n)
            yield g
        if self.canary is not None:
            yield from _canary_families(*self.canary)
        if self.lag is not None:
            from freshrag.api.freshness import measure

            engine_of, names = self.lag
            engine = engine_of()
            if engine is None:
                return
            g = GaugeMetricFamily("freshrag_lag_ms", "Freshness lag as /status reports it, "
                                  "checked at scrape time (absent when unknown)",
                                  labels=["source"])
            capture = {field: GaugeMetricFamily(metric, text, labels=["source", "mode"])
                       for field, (metric, text) in _CAPTURE.items()}
            for name in names():
                check = measure(engine, name)
                if check.lag_ms is not None:
                    g.add_metric([name], check.lag_ms)
                cap = check.capture or {}
                for field, family in capture.items():
                    value = cap.get(field)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        family.add_metric([name, str(cap.get("mode"))], value)
            yield g
            yield from capture.values()

    def describe(self) -> Iterable[Metric]:
        return []  # nothing to check at registration; collect() runs only at scrape time


def _canary_families(settings: Any, since: float) -> Iterable[Metric]:
    """Each canary as the watcher's shared state under home says (any process: serve too)."""
    from freshrag.canary import report

    verdicts = report(settings, since)
    if not verdicts:
        return
    success = GaugeMetricFamily("freshrag_canary_last_success_timestamp_seconds", "Unix time "
                                "the source's canary was last found through search",
                                labels=["source"])
    latency = GaugeMetricFamily("freshrag_canary_last_latency_seconds", "Write-to-searchable "
                                "seconds of the source's last canary found", labels=["source"])
    late = GaugeMetricFamily("freshrag_canary_late", "1 when the source's canary is late (no "
                             "success within canary_late_after)", labels=["source"])
    for name, v in sorted(verdicts.items()):
        if v["last_success"] is not None:
            success.add_metric([name], v["last_success"])
        if v["last_latency_s"] is not None:
            latency.add_metric([name], v["last_latency_s"])
        late.add_metric([name], 1.0 if v["late"] else 0.0)
    yield from (success, latency, late)


_LIVE = _Live()
REGISTRY.register(_LIVE)


def watch_pending(pending: Callable[[], dict[str, int]]) -> None:
    """Expose the watcher's queue (keys per source) at scrape time."""
    _LIVE.pending = pending


def watch_lag(engine: Callable[[], Any], names: Callable[[], Iterable[str]]) -> None:
    """Expose each source's lag, measured at scrape time on `engine()` (None: not yet)."""
    _LIVE.lag = (engine, names)


def watch_canary(settings: Any, since: float) -> None:
    """Expose the canaries of `settings` (their shared state under home) at scrape time."""
    _LIVE.canary = (settings, since)


def unwatch_lag(engine: Any) -> None:
    """Stop measuring lag on `engine` (it is closing), unless another took its place."""
    if _LIVE.lag is not None and _LIVE.lag[0]() is engine:
        _LIVE.lag = None


def render() -> bytes:
    """The registry in Prometheus text format."""
    return generate_latest(REGISTRY)


def serve(port: int, host: str = "127.0.0.1") -> None:
    """prometheus_client's own small HTTP server for this registry, in a daemon thread."""
    from prometheus_client import start_http_server

    start_http_server(port, host, registry=REGISTRY)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class HttpMetrics:
    """ASGI middleware: latency per route template (never the raw path: bounded labels)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_status(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "other"
            HTTP.labels(route, scope.get("method", ""), str(status)).observe(
                time.perf_counter() - started)
