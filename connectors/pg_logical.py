"""Postgres logical replication capture: a slot (test_decoding) read with the SQL slot functions.

psycopg 3 has no replication protocol, so the watcher peeks the slot with
`pg_logical_slot_peek_changes` (nothing is consumed), delivers the keys of each committed
transaction that touched the table, and moves the slot with `pg_replication_slot_advance` only
after the index write covering a transaction succeeded. A restart re-reads from the slot's
confirmed position: nothing is lost, a transaction may be delivered twice (the engine re-reads
keys, so that is harmless). The slot retains WAL until advanced: its lag is in `status`."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from connectors import capture
from connectors import sql_util as su

PEEK_CHANGES = 10_000  # changes per peek (the server stops at the next transaction end)
IDLE_S = 0.05


def lsn_value(lsn: str) -> int:
    hi, _, lo = lsn.partition("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def _value(raw: str) -> str:
    if raw.startswith("'") and raw.endswith("'"):
        return raw[1:-1].replace("''", "'")
    return raw


class LogicalReader:
    """poll() -> [(commit LSN, doc keys)] for transactions not yet delivered; commit(lsn)
    advances the slot to that transaction's commit."""

    def __init__(self, config: Any, base_dir: Path | str = "."):
        self.config = config
        self.opts = capture.parse_options(config)
        self.plan = capture.plan(config, "logical")
        self.engine = capture.writable(config, base_dir)
        schema, _, table = (self.opts.table or "").rpartition(".")
        self.prefix = f"table {schema or 'public'}.{table}: "
        self.cols = [re.compile(rf"(?:^|\s){re.escape(k)}\[[^\]]+\]:('(?:[^']|'')*'|\S+)")
                     for k in self.opts.key]
        self.delivered = 0  # commit LSN (as a number) of the last transaction delivered
        self._peek = sa.text(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_changes(:slot, NULL, :n, "
            "'skip-empty-xacts', '1', 'include-xids', '0')")

    def open(self) -> None:
        self.delivered = 0  # from the slot's confirmed position again: at least once

    def keys_of(self, data: str) -> list[str]:
        """The doc keys in one test_decoding row line (old key and new tuple of an UPDATE)."""
        body = data[len(self.prefix):]
        found = [[_value(m.group(1)) for m in rx.finditer(body)] for rx in self.cols]
        n = min((len(f) for f in found), default=0)
        return [su.encode_key([f[i] for f in found]) for i in range(n)
                if all(f[i] != "null" for f in found)]

    def poll(self) -> list[tuple[str, list[str]]]:
        with self.engine.connect() as conn:
            rows = conn.execute(self._peek, {"slot": self.plan.slot, "n": PEEK_CHANGES}).all()
        out: list[tuple[str, list[str]]] = []
        keys: dict[str, None] = {}
        idle: str | None = None  # newest new commit that touched other tables only
        for lsn, data in rows:
            if data.startswith("BEGIN"):
                keys = {}
            elif data.startswith("COMMIT"):
                value = lsn_value(lsn)
                if value > self.delivered:
                    self.delivered = value
                    if keys:
                        out.append((lsn, list(keys)))
                    else:
                        idle = lsn
            elif data.startswith(self.prefix):
                keys.update(dict.fromkeys(self.keys_of(data)))
        if not out:
            time.sleep(IDLE_S)
            if idle is not None:  # let the slot move past other tables' changes too
                return [(idle, [])]
        return out

    def commit(self, positions: list[str]) -> None:
        """The index holds every change up to the last of these commits: let the server drop
        that WAL."""
        lsn = positions[-1]
        with self.engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_replication_slot_advance(:slot, CAST(:lsn AS "
                                 "pg_lsn))"), {"slot": self.plan.slot, "lsn": lsn})

    def close(self) -> None:
        self.engine.dispose()


def status(config: Any, base_dir: Path | str = ".") -> dict[str, Any]:
    """The slot's lag (WAL not yet confirmed) and the WAL it retains, in bytes."""
    out: dict[str, Any] = {"mode": "logical", "slot": None}
    try:
        p = capture.plan(config, "logical")
        out["slot"] = p.slot
        engine = capture.writable(config, base_dir)
        try:
            with engine.connect() as conn:
                row = conn.execute(sa.text(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), "
                    "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), active "
                    "FROM pg_replication_slots WHERE slot_name = :s"), {"s": p.slot}).first()
        finally:
            engine.dispose()
        if row is None:
            out["detail"] = "the slot does not exist (freshrag sql capture-install creates it)"
        else:
            out.update(lag_bytes=int(row[0] or 0), retained_wal_bytes=int(row[1] or 0),
                       active=bool(row[2]))
    except Exception as exc:  # noqa: BLE001 - a status field, never a failed request
        out["detail"] = f"cannot read the slot: {capture.first_line(exc)}"
    return out
