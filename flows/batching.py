"""Debounce and coalesce change notifications into per-source batches of keys."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass
class Batch:
    """Keys of one source to bring in line; keys=None means "rescan the whole source"."""

    source: str
    keys: list[str] | None
    first: float  # monotonic time of the first change in the batch
    cut: float  # wall-clock time the batch was closed: the index reflects changes up to here

    @property
    def label(self) -> str:
        return "rescan" if self.keys is None else f"{len(self.keys)} key(s)"


@dataclass
class _Pending:
    keys: dict[str, None] = field(default_factory=dict)  # ordered set
    rescan: bool = False
    first: float = 0.0
    last: float = 0.0


class Coalescer:
    """Thread-safe: observers `add`, one consumer `take`s batches once they are quiet or old.

    A batch is ready when no change arrived for `quiet` seconds, or `max_delay` seconds after its
    first change, whichever comes first. A rescan request does not swallow the keys pending with
    it: a watcher's rescan may skip the hard-delete reconcile, so named keys (a delete from a
    change stream) follow as their own batch right after the rescan.
    """

    def __init__(self, quiet: float = 0.1, max_delay: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        if quiet <= 0 or max_delay < quiet:
            raise ValueError("need 0 < quiet <= max_delay")
        self.quiet, self.max_delay, self.clock = quiet, max_delay, clock
        self._pending: dict[str, _Pending] = {}
        self._cond = threading.Condition()

    def add(self, source: str, keys: Iterable[str]) -> None:
        with self._cond:
            p = self._touch(source)
            p.keys.update(dict.fromkeys(keys))
            self._cond.notify_all()

    def rescan(self, source: str) -> None:
        with self._cond:
            p = self._touch(source)
            p.rescan = True
            self._cond.notify_all()

    def _touch(self, source: str) -> _Pending:
        now = self.clock()
        p = self._pending.get(source)
        if p is None:
            p = self._pending[source] = _Pending(first=now)
        p.last = now
        return p

    def _due(self, p: _Pending) -> float:
        return min(p.last + self.quiet, p.first + self.max_delay)

    def _cut(self, source: str) -> Batch:
        p = self._pending.pop(source)
        if p.rescan and p.keys:  # the keys stay queued, due right after the rescan
            now = self.clock()
            self._pending[source] = _Pending(keys=p.keys, first=now - self.max_delay, last=now)
        return Batch(source, None if p.rescan else list(p.keys), p.first, time.time())

    def take(self, timeout: float | None = None) -> Batch | None:
        """The next ready batch (earliest due first), waiting up to `timeout` seconds for one."""
        deadline = None if timeout is None else self.clock() + timeout
        with self._cond:
            while True:
                now = self.clock()
                if self._pending:
                    source, p = min(self._pending.items(), key=lambda kv: self._due(kv[1]))
                    due = self._due(p)
                    if due <= now:
                        return self._cut(source)
                    wait = due - now
                else:
                    wait = None
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def drain(self) -> list[Batch]:
        """Everything pending, ready or not (used on shutdown)."""
        out: list[Batch] = []
        with self._cond:
            while self._pending:  # a cut rescan leaves its keys queued: cut those too
                out += [self._cut(s) for s in list(self._pending)]
        return out

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def pending_keys(self) -> dict[str, int]:
        """Keys queued per source, not yet taken (a queued rescan counts 1)."""
        with self._cond:
            return {s: 1 if p.rescan else len(p.keys) for s, p in self._pending.items()}
