"""Per-source freshness (watermark, lag, pending changes), checked cheaply, shared and awaited."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from freshrag.api.schemas import SourceFreshness

log = logging.getLogger("freshrag.api")

# Source types whose scan is a cheap "what changed" (a stat walk compared with the ledger).
SCANNABLE = frozenset({"folder"})
# Source types with a cursor poll (connectors.sql): proven current by the last complete poll,
# or polled now (read-only, poll and reconcile, like a sync's detect) for a freshness demand.
POLLED = frozenset({"sql"})


@dataclass(frozen=True)
class Check:
    """One source's freshness as of `checked_at` (taken before anything else was read)."""

    source: str
    watermark: float | None
    lag_ms: float | None
    pending: int | None
    failed: int
    method: str
    checked_at: float
    last_sync_end: float | None
    configured: bool = True
    detail: str | None = None
    capture: dict[str, Any] | None = None

    def model(self) -> SourceFreshness:
        return SourceFreshness(
            watermark=self.watermark, lag_ms=self.lag_ms, pending=self.pending,
            failed=self.failed, method=self.method,  # type: ignore[arg-type]
            checked_at=self.checked_at, last_sync_end=self.last_sync_end, detail=self.detail,
            capture=self.capture)


def measure(engine: Any, name: str, deep: bool = False) -> Check:
    """Check one source now. Never raises: a source that cannot be checked has lag None.
    `deep`: a table is polled now (for a freshness demand); else its last poll is used."""
    started = time.time()
    try:
        return _measure(engine, name, started, deep)
    except Exception as exc:  # the ledger or the source is unreachable
        log.warning("freshness of %s: %s", name, exc)
        return Check(name, None, None, None, 0, "none", started, None,
                     detail=f"cannot check freshness: {type(exc).__name__}")


def _measure(engine: Any, name: str, started: float, deep: bool) -> Check:
    state = engine.ledger.source_state(name)
    config = next((s for s in engine.settings.sources if s.name == name), None)
    if config is None:
        return Check(name, state.watermark, None, None, 0, "none", started, state.last_end,
                     configured=False, detail="not configured: nothing updates it")
    if config.type in POLLED:
        return _table(engine, name, started, deep, state.last_end)
    if config.type not in SCANNABLE:
        if state.watermark is None:
            return Check(name, None, None, None, 0, "watermark", started, state.last_end,
                         detail="never synced")
        lag = max(0.0, started - state.watermark) * 1000
        return Check(name, state.watermark, round(lag, 1), None, 0, "watermark", started,
                     state.last_end)
    # Ledger first, then the files: a sync committing in between shows as pending (safe side).
    known = engine.ledger.fingerprints(name)
    failed_at = {e["key"]: e["at"] for e in engine.ledger.errors(name, limit=1_000_000)}
    candidates = list(engine.source(name).scan(known))
    since: list[float | None] = []  # per pending item: no unindexed change of it is older
    failed = 0
    for cand in candidates:
        if cand.skipped is not None:  # not a document: never pending, never failed
            continue
        if cand.error is not None:
            failed += 1
        elif (cand.fingerprint is not None
              and failed_at.get(cand.key, -math.inf) >= cand.fingerprint.mtime_ns / 1e9):
            failed += 1  # tried after its last change and failed: reported, not pending
        else:
            # An mtime dates the newest change, not the first unindexed one (an earlier save
            # may be pending under it): only the last sync's watermark, or the indexed
            # version's mtime, bound when the first unindexed change happened.
            indexed = known.get(cand.key)
            bounds = [b for b in (state.watermark,
                                  indexed.mtime_ns / 1e9 if indexed else None) if b is not None]
            since.append(max(bounds) if bounds else None)
    if not since:
        return Check(name, started, 0.0, 0, failed, "scan", started, state.last_end)
    if any(s is None for s in since):
        return Check(name, None, None, len(since), failed, "scan", started, state.last_end,
                     detail="never synced")
    oldest = min(s for s in since if s is not None)
    # Something pending always means some lag, even if a clock says "just now".
    lag = max(1.0, round((started - oldest) * 1000, 1))
    return Check(name, oldest, lag, len(since), failed, "scan", started, state.last_end)


def _table(engine: Any, name: str, started: float, deep: bool, last_end: float | None
           ) -> Check:
    from dataclasses import replace

    src = engine.source(name)
    check = _table_check(src, engine, name, started, deep, last_end)
    status = getattr(src, "capture_status", None)
    capture = status() if status is not None else None
    return replace(check, capture=capture) if capture else check


def _table_check(src: Any, engine: Any, name: str, started: float, deep: bool,
                 last_end: float | None) -> Check:
    proven = src.last_poll()  # start of the last poll whose changes were all written
    if not deep:
        if proven is None:
            return Check(name, None, None, None, 0, "last_poll", started, last_end,
                         detail="never polled")
        return Check(name, proven, round(max(0.0, started - proven) * 1000, 1), None, 0,
                     "last_poll", started, last_end)
    known = engine.ledger.fingerprints(name)
    candidates = src.check(known)
    failed = sum(1 for c in candidates if c.error is not None)
    pending = len(candidates) - failed
    if not pending:
        return Check(name, started, 0.0, 0, failed, "poll", started, last_end)
    if proven is None:
        return Check(name, None, None, pending, failed, "poll", started, last_end,
                     detail="never polled")
    lag = max(1.0, round((started - proven) * 1000, 1))
    return Check(name, proven, lag, pending, failed, "poll", started, last_end)


class Stale(Exception):
    """The index did not catch up within the wait bound."""

    def __init__(self, checks: dict[str, Check], waited_ms: float):
        super().__init__("stale")
        self.checks = checks
        self.waited_ms = waited_ms


def satisfied(checks: Iterable[Check], max_lag_ms: int | None,
              min_watermark: float | None) -> bool:
    for c in checks:
        if not c.configured:  # frozen data: nothing can make it fresher
            continue
        if max_lag_ms is not None and (c.lag_ms is None or c.lag_ms > max_lag_ms):
            return False
        if min_watermark is not None and (c.watermark is None or c.watermark < min_watermark):
            return False
    return True


class FreshnessTracker:
    """Shares checks: one check per source runs at a time; callers say how recent it must be."""

    def __init__(self, engine: Any, ttl_s: float, poll_s: float, max_wait_s: float):
        self.engine = engine
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self.max_wait_s = max_wait_s
        # keyed by (source, deep): a deep check (a table polled now) also serves shallow asks
        self._done: dict[tuple[str, bool], Check] = {}
        self._running: dict[tuple[str, bool], asyncio.Task[Check]] = {}

    async def _run(self, name: str, deep: bool) -> Check:
        try:
            result = await run_in_threadpool(measure, self.engine, name, deep)
            self._done[(name, deep)] = result
            return result
        finally:
            self._running.pop((name, deep), None)

    async def check(self, name: str, not_before: float, deep: bool = False) -> Check:
        """A check of `name` that started at or after `not_before`."""
        while True:
            for kind in (True,) if deep else (True, False):
                done = self._done.get((name, kind))
                if done is not None and done.checked_at >= not_before:
                    return done
            task = self._running.get((name, deep))
            if task is None:
                task = asyncio.ensure_future(self._run(name, deep))
                self._running[(name, deep)] = task
            result = await asyncio.shield(task)
            if result.checked_at >= not_before:
                return result

    async def check_all(self, names: list[str], not_before: float,
                        deep: bool = False) -> dict[str, Check]:
        results = await asyncio.gather(*(self.check(n, not_before, deep) for n in names))
        return dict(zip(names, results, strict=True))

    async def current(self, names: list[str]) -> dict[str, Check]:
        """Checks no older than the cache TTL (for answers without a freshness demand)."""
        return await self.check_all(names, time.time() - self.ttl_s)

    async def ensure(self, names: list[str], max_lag_ms: int | None,
                     min_watermark: float | None) -> dict[str, Check]:
        """Checks that satisfy the demand, polling up to the wait bound; raises Stale."""
        if max_lag_ms is None and min_watermark is None:
            return await self.current(names)
        start = time.time()
        deadline = start + self.max_wait_s
        checks = await self.check_all(names, start, deep=True)
        while not satisfied(checks.values(), max_lag_ms, min_watermark):
            now = time.time()
            if now >= deadline:
                raise Stale(checks, round((now - start) * 1000, 1))
            await asyncio.sleep(min(self.poll_s, deadline - now))
            checks = await self.check_all(names, time.time(), deep=True)
        return checks
