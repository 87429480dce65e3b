"""The watcher's canaries: rewrite each source's canary document, find it through search, time it.

Runs in the watcher's loop (no thread of its own): after each batch, or every loop tick, a
pending canary is searched for with the engine's search, as /search runs it; one due is
rewritten. Each change of state is written under home for serve and status to read.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freshrag import canary, metrics
from freshrag.model import Filters

log = logging.getLogger("freshrag.watch")
LATE = "freshrag.canary.late"  # a canary found no success within canary_late_after
RECOVERED = "freshrag.canary.recovered"  # a late canary was found again
FOUND = "freshrag.canary.found"  # each success (a proactive automation expects it)


@dataclass
class _One:
    source: str
    root: Path
    interval: float
    late_after: float
    state: dict[str, Any] = field(default_factory=dict)
    nonce: str | None = None  # written, not yet found
    written: float = 0.0
    due: float = 0.0  # monotonic time of the next write
    late: bool = False


class Canaries:
    """The canaries of the sources a local watcher follows."""

    def __init__(self, engine: Any, settings: Any, names: list[str], emit: bool):
        self.engine, self.home, self.emit = engine, Path(settings.home), emit
        self.items: list[_One] = []
        for config in canary.enabled(settings):
            if config.name in names:
                root = Path(engine.source(config.name).root)
                self.items.append(_One(config.name, root, float(config.canary_interval),
                                       canary.late_after(config)))

    def start(self) -> None:
        """The clock of lateness starts now (the first canary is written once ready)."""
        now = time.time()
        for one in self.items:
            previous = canary.read_state(self.home, one.source) or {}
            one.state = {"started": now, "pid": os.getpid(), "missed": 0,
                         "last_success": previous.get("last_success"),
                         "last_latency_s": previous.get("last_latency_s")}
            self._save(one)

    def stop(self) -> None:
        for one in self.items:
            one.state["stopped"] = time.time()
            self._save(one)

    def tick(self, ready: bool) -> None:
        """Look for pending canaries, write those due, and say when one turns late."""
        for one in self.items:
            try:
                if one.nonce is not None:
                    self._probe(one)
                if ready and time.monotonic() >= one.due:
                    self._write(one)
            except Exception as exc:  # noqa: BLE001 - a failed canary is what it reports
                log.warning("%s: canary: %s: %s", one.source, type(exc).__name__, exc)
                one.due = time.monotonic() + one.interval
            self._lateness(one)

    def _write(self, one: _One) -> None:
        if one.nonce is not None:  # never found within an interval: counted, replaced
            metrics.CANARY_MISSED.labels(one.source).inc()
            one.state["missed"] = one.state.get("missed", 0) + 1
        one.due = time.monotonic() + one.interval
        nonce = f"canary{secrets.token_hex(8)}"
        path = one.root / canary.CANARY_KEY
        path.parent.mkdir(exist_ok=True)
        tmp = path.parent / ".canary.txt.tmp"  # hidden: the feed ignores it, the rename counts
        tmp.write_text(f"freshrag canary {nonce}\n", encoding="utf-8")
        one.written = time.time()
        os.replace(tmp, path)
        one.nonce = nonce
        one.state["last_write"] = one.written
        self._save(one)

    def _probe(self, one: _One) -> None:
        assert one.nonce is not None
        hits = self.engine.search(one.nonce, 1, filters=Filters(
            source=one.source, doc_key_prefix=canary.CANARY_KEY))
        if not any(one.nonce in h.text for h in hits):
            return
        now = time.time()
        latency = max(0.0, now - one.written)
        metrics.CANARY.labels(one.source).observe(latency)
        one.nonce = None
        one.state.update(last_success=now, last_latency_s=round(latency, 4))
        self._save(one)
        self._event(FOUND, one, latency_s=round(latency, 4))

    def _lateness(self, one: _One) -> None:
        success = one.state.get("last_success") or 0.0
        late = time.time() - max(success, one.state["started"]) > one.late_after
        if late == one.late:
            return
        one.late = late
        if late:
            log.warning("%s: canary late: not found through search for over %.0f s (written "
                        "every %.0f s)", one.source, one.late_after, one.interval)
            self._event(LATE, one)
        else:
            log.warning("%s: canary found again: changes reach search", one.source)
            self._event(RECOVERED, one)

    def _event(self, name: str, one: _One, **payload: Any) -> None:
        if not self.emit:
            return
        from prefect.events import emit_event

        from flows.watch import resource

        try:
            emit_event(name, resource=resource(one.source), payload={
                "late_after_s": one.late_after, "interval_s": one.interval,
                "last_success": one.state.get("last_success"), **payload})
        except Exception as exc:  # noqa: BLE001 - the record is best effort
            log.debug("canary event %s: %s", name, exc)

    def _save(self, one: _One) -> None:
        try:
            canary.write_state(self.home, one.source, one.state)
        except OSError as exc:
            log.warning("%s: canary state: %s", one.source, exc)
