"""Trigger-fed changelog capture (any engine): read the freshrag-owned table, trim what is indexed.

Rows are read from the start of the table every time (not "seq > last"), so a row whose
transaction committed after a higher seq was read is still found; a row is deleted only after
the index write covering it succeeded, so a restart re-reads what was not yet covered."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from connectors import capture

READ_ROWS = 5000  # rows per read of the changelog
TRIM_ROWS = 500  # seqs per DELETE ... WHERE seq IN (...)
IDLE_S = 0.05  # pause when nothing new was found


class ChangelogReader:
    """poll() -> [(seqs, doc keys)] for rows not yet delivered; commit(seqs) deletes them."""

    def __init__(self, config: Any, base_dir: Path | str = "."):
        self.config = config
        self.plan = capture.plan(config, "changelog")
        self.engine = capture.writable(config, base_dir)
        self.delivered: set[int] = set()
        table = self.plan.changelog
        self._read = sa.text(f"SELECT seq, doc_key FROM {table} ORDER BY seq LIMIT {READ_ROWS}")
        self._table = table

    def open(self) -> None:
        self.delivered.clear()  # a reconnect re-delivers what is not trimmed: at least once

    def poll(self) -> list[tuple[tuple[int, ...], list[str]]]:
        with self.engine.connect() as conn:
            rows = conn.execute(self._read).all()
        new = [(int(seq), str(key)) for seq, key in rows if int(seq) not in self.delivered]
        if not new:
            time.sleep(IDLE_S)
            return []
        seqs = tuple(seq for seq, _ in new)
        self.delivered.update(seqs)
        return [(seqs, list(dict.fromkeys(key for _, key in new)))]

    def commit(self, positions: list[tuple[int, ...]]) -> None:
        """The index holds these rows' changes: delete them from the changelog."""
        seqs = tuple(s for part in positions for s in part)
        with self.engine.begin() as conn:
            for i in range(0, len(seqs), TRIM_ROWS):
                part = ", ".join(str(int(s)) for s in seqs[i:i + TRIM_ROWS])
                conn.execute(sa.text(f"DELETE FROM {self._table} WHERE seq IN ({part})"))
        self.delivered.difference_update(seqs)

    def close(self) -> None:
        self.engine.dispose()


def status(config: Any, base_dir: Path | str = ".") -> dict[str, Any]:
    """How many changelog rows wait to be indexed, and how old the oldest is."""
    out: dict[str, Any] = {"mode": "changelog", "backlog_rows": None}
    try:
        p = capture.plan(config, "changelog")
        engine = capture.writable(config, base_dir)
        try:
            with engine.connect() as conn:
                out["backlog_rows"] = int(conn.execute(
                    sa.text(f"SELECT count(*) FROM {p.changelog}")).scalar_one())
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - a status field, never a failed request
        out["detail"] = f"cannot read the changelog: {capture.first_line(exc)}"
    return out
