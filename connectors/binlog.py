"""MySQL/MariaDB ROW binlog capture: read a table's row events as a replica would.

Uses mysql-replication (pymysqlreplication). Keys are delivered per transaction with the
binlog position after its commit; the watcher saves a position (in `<home>/capture/`) only
after the index write covering it succeeded, and resumes from it. When the saved position has
been purged from the server, the gap is logged, counted, and closed by a poll + reconcile."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import zlib
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from connectors import sql_util as su
from connectors.capture_sql import slug
from connectors.sql_options import parse_options

log = logging.getLogger("freshrag.binlog")
Position = tuple[str, int]
PURGED = 1236  # ER_MASTER_FATAL_ERROR_READING_BINLOG: the file is gone


def state_file(config: Any, home: Path | str) -> Path:
    return Path(home) / "capture" / f"{slug(config.name)}.binlog.json"


def load_state(config: Any, home: Path | str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(state_file(config, home).read_text())
        return data
    except (OSError, ValueError):
        return {}


def save_state(config: Any, home: Path | str, state: dict[str, Any]) -> None:
    path = state_file(config, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def forget(config: Any, home: Path | str) -> None:
    """Drop the saved position (capture-uninstall): the next start reads from the current one."""
    state_file(config, home).unlink(missing_ok=True)


class BinlogReader:
    """One table's row events. `open()` positions the stream; `poll()` returns
    [(position after the transaction, [doc keys])] for transactions that touched the table."""

    def __init__(self, config: Any, home: Path | str, base_dir: Path | str = "."):
        self.config, self.home = config, Path(home)
        self.opts = parse_options(config)
        url = make_url(self.opts.url)
        schema, _, table = (self.opts.table or "").rpartition(".")
        self.schema, self.table = schema or url.database or "", table
        self.conn: dict[str, Any] = {k: v for k, v in {
            "host": url.host or "127.0.0.1", "port": url.port or 3306, "user": url.username,
            "passwd": url.password}.items() if v is not None}
        self.server_id = self.opts.capture_server_id or (
            2 + zlib.crc32(f"freshrag:{config.name}".encode()) % (2**31 - 3))
        self.stream: Any = None
        self.position: Position | None = None
        self.gap = False  # the saved position was purged: a reconcile is owed
        self._keys: dict[str, None] = {}

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        import pymysql

        conn = pymysql.connect(connect_timeout=10, **self.conn)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()

    def current(self) -> Position:
        rows = self._query("SHOW MASTER STATUS")
        if not rows:
            raise RuntimeError("the server writes no binary log (SHOW MASTER STATUS is empty)")
        return str(rows[0][0]), int(rows[0][1])

    def open(self) -> None:
        """Resume from the saved position, or start at the server's current one (first start:
        the watcher's start-up reconcile covers what came before). A purged position sets
        `gap`, counts it in the state file and starts at the current position."""
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.event import HeartbeatLogEvent, QueryEvent, XidEvent
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

        logging.getLogger("pymysqlreplication").setLevel(logging.ERROR)  # its metadata advice
        state = load_state(self.config, self.home)
        saved = (state["file"], int(state["pos"])) if "file" in state else None
        if saved is not None:
            files = {str(r[0]) for r in self._query("SHOW BINARY LOGS")}
            if saved[0] not in files:
                self._purged(state, saved)
                saved = None
        start = saved or self.current()
        if saved is None:
            state.update(file=start[0], pos=start[1])
            save_state(self.config, self.home, state)
        self.position = start
        self.stream = BinLogStreamReader(
            connection_settings=self.conn, server_id=self.server_id, resume_stream=True,
            log_file=start[0], log_pos=start[1], blocking=True, slave_heartbeat=0.5,
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent, QueryEvent,
                         HeartbeatLogEvent],  # a heartbeat returns control every 0.5 s
            only_schemas=[self.schema] if self.schema else None, only_tables=[self.table],
            use_column_name_cache=True,  # column names from information_schema when the
            enable_logging=False)  # binlog carries none (binlog_row_metadata = MINIMAL)

    def _purged(self, state: dict[str, Any], saved: Position) -> None:
        state["purged"] = int(state.get("purged", 0)) + 1
        state.pop("file", None)
        state.pop("pos", None)
        save_state(self.config, self.home, state)
        self.gap = True
        log.warning("%s: binlog position %s:%d was purged from the server; changes since then "
                    "are caught up by a poll and reconcile (gap #%d)", self.config.name,
                    saved[0], saved[1], state["purged"])

    def poll(self) -> list[tuple[Position, list[str]]]:
        """Block until the next event or heartbeat (~0.5 s); never raises for a purged log."""
        import pymysql
        from pymysqlreplication.event import HeartbeatLogEvent, QueryEvent, XidEvent

        try:
            event = self.stream.fetchone()
        except pymysql.OperationalError as exc:
            if exc.args and exc.args[0] == PURGED:
                self._purged(load_state(self.config, self.home), self.position or ("?", 0))
                self.close()
                self.open()
                return []
            raise
        if event is None:
            return []
        if isinstance(event, HeartbeatLogEvent):
            return []
        if isinstance(event, QueryEvent) and str(event.query).strip().upper() != "COMMIT":
            return []  # BEGIN, DDL: not a row change, not the end of one
        if isinstance(event, XidEvent | QueryEvent):  # a transaction committed
            pos = (str(self.stream.log_file), int(self.stream.log_pos))
            self.position = pos
            keys, self._keys = list(self._keys), {}
            return [(pos, keys)] if keys else []
        for row in event.rows:
            for part in ("values", "before_values", "after_values"):
                values = row.get(part)
                if values is not None:
                    self._keys[su.encode_key([values[k] for k in self.opts.key])] = None
        return []

    def commit(self, positions: list[Position]) -> None:
        """The index holds every change up to the last of these: resume from there."""
        pos = positions[-1]
        state = load_state(self.config, self.home)
        state.update(file=pos[0], pos=pos[1])
        save_state(self.config, self.home, state)

    def close(self) -> None:
        if self.stream is not None:
            with contextlib.suppress(Exception):  # closing a broken stream
                self.stream.close()
            self.stream = None


def status(config: Any, home: Path | str) -> dict[str, Any]:
    """The saved position, the server's current one, and how many purged gaps were closed."""
    state = load_state(config, home)
    out: dict[str, Any] = {"mode": "binlog", "position": None, "purged_gaps": 0}
    if "file" in state:
        out["position"] = f"{state['file']}:{state['pos']}"
    out["purged_gaps"] = int(state.get("purged", 0))
    try:
        reader = BinlogReader(config, home)
        f, p = reader.current()
        out["server_position"] = f"{f}:{p}"
        if "file" in state and state["file"] == f:
            out["lag_bytes"] = max(0, p - int(state["pos"]))
    except Exception as exc:  # noqa: BLE001 - a status field, never a failed request
        out["detail"] = f"cannot read the server position: {type(exc).__name__}"
    return out
