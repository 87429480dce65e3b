"""A per-source writer lock with a lease in the ledger, renewed while held, taken over when dead."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from freshrag.ledger import Ledger, locks

# Which lane a lock request is in. A live change (the watcher, a plain sync) that finds the lock
# taken leaves a waiting mark; a backfill's range defers to any live mark, so a live change
# waits at most for the one range write in progress, never behind the rest of the backfill.
LIVE, BACKFILL = "live", "backfill"
_lane: ContextVar[str] = ContextVar("freshrag_lock_lane", default=LIVE)
WAIT_MARK = "#wait-"
RUN_MARK = "#backfill"


@contextmanager
def lane(name: str) -> Iterator[None]:
    """Lock requests made in this block (this thread or task) are in lane `name`."""
    token = _lane.set(name)
    try:
        yield
    finally:
        _lane.reset(token)


class SourceBusy(RuntimeError):
    """Another live process holds the source's lock beyond the wait bound; the message says who."""


class LockLost(RuntimeError):
    """The lease could not be renewed in time (another process may have taken the source over)."""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def me() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _start_time(pid),
            "command": " ".join(os.path.basename(a) for a in sys.argv[:3])}


def holder_dead(holder: dict[str, Any]) -> bool:
    """True only when the holder ran on this host and that process no longer exists. A holder
    on another host is presumed alive until its lease expires."""
    if holder.get("host") != socket.gethostname():
        return False
    pid = int(holder.get("pid", 0))
    if pid <= 0 or not _alive(pid):
        return True
    start = holder.get("start")
    return start is not None and _start_time(pid) not in (None, start)


def describe(holder: dict[str, Any], acquired_at: float) -> str:
    since = datetime.fromtimestamp(acquired_at).strftime("%H:%M:%S")
    return (f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command') or '?'}) "
            f"since {since}")


@dataclass
class _Row:
    holder: dict[str, Any]
    token: str
    acquired_at: float
    expires_at: float


class LeaseLock:
    """Held by one sync of one source. `acquire` waits up to `wait_s`; a heartbeat thread renews
    the lease every lease_s / 3. A holder killed on this host is taken over at once; one on
    another host when its lease has run out."""

    def __init__(self, ledger: Ledger, name: str, lease_s: float = 30.0, wait_s: float = 60.0,
                 poll_s: float = 0.2, clock: Callable[[], float] = time.time):
        self.ledger, self.name = ledger, name
        self.lease_s, self.wait_s, self.poll_s = lease_s, wait_s, poll_s
        self.clock = clock
        self.token = uuid.uuid4().hex
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> _Row | None:
        with self.ledger.engine.connect() as conn:
            row = conn.execute(select(locks).where(locks.c.name == self.name)).first()
        if row is None:
            return None
        return _Row(json.loads(row.holder), row.token, row.acquired_at, row.expires_at)

    def try_acquire(self) -> _Row | None:
        """Take the lock if it is free, expired or held by a dead process; else the holder."""
        now = self.clock()
        values = {"holder": json.dumps(me()), "token": self.token, "acquired_at": now,
                  "expires_at": now + self.lease_s}
        current = self._read()
        try:
            with self.ledger.engine.begin() as conn:
                if current is None:
                    conn.execute(insert(locks).values(name=self.name, **values))
                    return None
                if current.expires_at > now and not holder_dead(current.holder):
                    return current
                res = conn.execute(update(locks).where(and_(
                    locks.c.name == self.name, locks.c.token == current.token)).values(**values))
                return None if res.rowcount == 1 else current
        except IntegrityError:  # another process inserted first
            return self._read() or current

    def acquire(self) -> LeaseLock:
        deadline = self.clock() + self.wait_s
        deferring = _lane.get() == BACKFILL
        marked = False
        try:
            while True:
                holder: _Row | None = None
                if not (deferring and live_waiting(self.ledger, self.name)):
                    holder = self.try_acquire()
                    if holder is None:
                        break
                    if not deferring:
                        self._mark_waiting()
                        marked = True
                if self.clock() >= deadline:
                    if holder is None:
                        raise SourceBusy(f"source {self.name!r}: live changes kept the lock "
                                         f"for {self.wait_s:g} s")
                    who = describe(holder.holder, holder.acquired_at)
                    raise SourceBusy(f"source {self.name!r} is being synced by {who}; waited "
                                     f"{self.wait_s:g} s (sync --wait SECONDS to wait longer)")
                time.sleep(self.poll_s)
        finally:
            if marked:
                self._unmark_waiting()
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def _mark_waiting(self) -> None:
        """Say (renewing) that a live change waits for this lock; a backfill defers to it."""
        now = self.clock()
        name = f"{self.name}{WAIT_MARK}{self.token[:12]}"
        values = {"holder": json.dumps(me()), "token": self.token, "acquired_at": now,
                  "expires_at": now + max(5.0, 10 * self.poll_s)}
        with self.ledger.engine.begin() as conn:
            res = conn.execute(update(locks).where(locks.c.name == name).values(**values))
            if res.rowcount == 0:
                conn.execute(insert(locks).values(name=name, **values))

    def _unmark_waiting(self) -> None:
        with self.ledger.engine.begin() as conn:
            conn.execute(delete(locks).where(
                locks.c.name == f"{self.name}{WAIT_MARK}{self.token[:12]}"))

    def renew(self) -> bool:
        with self.ledger.engine.begin() as conn:
            res = conn.execute(update(locks).where(and_(
                locks.c.name == self.name, locks.c.token == self.token)).values(
                expires_at=self.clock() + self.lease_s))
        return res.rowcount == 1

    def _beat(self) -> None:
        renewed = self.clock()
        while not self._stop.wait(self.lease_s / 3):
            try:
                if not self.renew():
                    self.lost = f"lock on source {self.name!r} was taken over by another process"
                    return
                renewed = self.clock()
            except Exception as exc:  # the ledger is briefly unreachable: try again
                if self.clock() > renewed + self.lease_s:
                    self.lost = f"lease on source {self.name!r} could not be renewed: {exc}"
                    return

    def check(self) -> None:
        """Raise LockLost if the lease was lost (called before each index write)."""
        if self.lost:
            raise LockLost(self.lost)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self.ledger.engine.begin() as conn:
            conn.execute(delete(locks).where(and_(locks.c.name == self.name,
                                                  locks.c.token == self.token)))


def _live_rows(ledger: Ledger, prefix: str, now: float) -> list[dict[str, Any]]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(locks.c.name, locks.c.holder, locks.c.expires_at)).all()
    return [json.loads(r.holder) for r in rows if r.name.startswith(prefix)
            and r.expires_at > now and not holder_dead(json.loads(r.holder))]


def live_waiting(ledger: Ledger, name: str) -> bool:
    """Whether a live change is waiting for lock `name` (a backfill's range then defers)."""
    return bool(_live_rows(ledger, f"{name}{WAIT_MARK}", time.time()))


def backfill_running(ledger: Ledger, source: str) -> dict[str, Any] | None:
    """The holder of a backfill of `source` in flight (its lease alive), else None."""
    rows = [h for h in _live_rows(ledger, f"{source}{RUN_MARK}", time.time())]
    return rows[0] if rows else None


@contextmanager
def held(ledger: Ledger, name: str, **options: Any) -> Iterator[LeaseLock]:
    lock = LeaseLock(ledger, name, **options).acquire()
    try:
        yield lock
    finally:
        lock.release()
