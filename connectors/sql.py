"""The SQL table source: a row is a document; changes by a (cursor, key) keyset poll."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Row

from connectors import SourceError
from connectors import sql_util as su
from connectors.permissions import with_readers
from connectors.sql_options import SqlOptions, display_url, make_engine, parse_options
from connectors.sql_options import template_fields as _template_fields
from connectors.sql_util import is_deleted, python_type
from freshrag.config import ConfigError
from freshrag.model import Candidate, Fingerprint, Item
from freshrag.retry import retry

log = logging.getLogger("freshrag.sql")
T = TypeVar("T")
CACHE_BYTES = 64 * 1024 * 1024  # rows read by a scan are kept for read() up to this much
FETCH_KEYS = 200  # keys per "WHERE key IN (...)" query
MASS_DELETE_MIN = 10  # a reconcile may always delete this many documents
_MISSING = ("no such table", "does not exist", "doesn't exist", "unknown column",
            "no such column", "unknown table")

__all__ = ["SqlOptions", "SqlSource", "SourceUnavailable"]


class SourceUnavailable(SourceError):
    """The database stayed unreachable through the retries; nothing was changed."""


class _Transient(Exception):
    pass


class SqlSource:
    """One table (or read-only query) of a Postgres, MySQL/MariaDB or SQLite database."""

    def __init__(self, config: Any, settings: Any):
        self.name: str = config.name
        self.config = config
        self.opts: SqlOptions = parse_options(config)
        self.settings = settings
        self.poll_interval = self.opts.poll_interval  # None: the watcher's default
        # A one-off sync reconciles hard deletes every time; the watcher, which polls every few
        # seconds, sets this so its polls reconcile only every `reconcile_every` seconds.
        self.reconcile_spaced = False
        self._force_reconcile = False
        self.url = display_url(self.opts.url)
        base = Path(getattr(settings, "base_dir", "."))
        self.db = make_engine(self.opts, self.name, base)
        self.fields = _template_fields(self.opts.text)
        o = self.opts
        self.readers_col = o.permissions if o.permissions != "none" else None
        self.columns = list(dict.fromkeys([*o.key, o.cursor, *([o.deleted] if o.deleted else []),
                                           *self.fields, *o.metadata,
                                           *([self.readers_col] if self.readers_col else [])]))
        self.relation_name = o.table or "query"
        self._ledger: Any = None
        self.rel: Any = None  # the table or the query as a subquery, resolved at first use
        self.types: dict[str, type | None] = {}
        self._pending: dict[str, Any] | None = None
        self._cache: dict[str, Item | str] = {}
        self._cache_bytes = 0
        self._order: list[str] = []
        self._pos: dict[str, int] = {}
        self._reported: dict[str, tuple[int, str]] = {}
        self.last_reconcile: dict[str, Any] = {}
        # A pass covers every change before its batch's cut when it read named keys or
        # reconciled: only then may a change stream's position advance (flows.table_feeds).
        self._covers = False
        self.covering_commits = 0

    # ledger (cursor state) ------------------------------------------------------------------------
    def bind_ledger(self, ledger: Any) -> None:
        """Use the engine's ledger for the cursor state (else one is opened from settings)."""
        self._ledger = ledger

    @property
    def ledger(self) -> Any:
        if self._ledger is None:
            from freshrag.ledger import Ledger

            self._ledger = Ledger(self.settings.ledger())
        return self._ledger

    def _identity(self) -> str:
        o = self.opts
        return json.dumps([o.table or o.query, o.key, o.cursor])

    def load_state(self) -> dict[str, Any]:
        raw = self.ledger.source_state(self.name).cursor
        state: dict[str, Any] = json.loads(raw) if raw else {}
        if state.get("identity") != self._identity():  # table, key or cursor column changed
            return {"identity": self._identity()}
        return state

    # database access ----------------------------------------------------------------------------
    def run(self, what: str, fn: Callable[[Connection], T]) -> T:
        """Run `fn` on a fresh short transaction; lost connections are retried with backoff."""
        def attempt() -> T:
            try:
                with self.db.connect() as conn:
                    return fn(conn)
            except sa_exc.DBAPIError as exc:
                message = str(exc.orig or exc).strip().splitlines()[0] if exc.orig else str(exc)
                if any(m in message.lower() for m in _MISSING):
                    raise ConfigError(
                        f"sources.{self.name}: {self.relation_name} or one of its columns is "
                        f"missing in {self.url} ({message}); dropped or renamed? Nothing was "
                        "deleted from the index.") from exc
                if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) \
                        or exc.connection_invalidated:
                    raise _Transient(message) from exc
                raise
        try:
            return retry(attempt, (_Transient,), what=f"source {self.name}: {what}",
                         attempts=self.opts.retries)
        except _Transient as exc:
            raise SourceUnavailable(f"sources.{self.name}: {what} on {self.url} failed after "
                                    f"{self.opts.retries} attempts: {exc}") from exc

    def execute(self, conn: Connection, stmt: Any) -> list[Row[Any]]:
        return list(conn.execute(stmt).all())

    def _runner(self, stmt: Any) -> Callable[[Connection], list[Row[Any]]]:
        return lambda conn: self.execute(conn, stmt)

    def resolve(self) -> None:
        """Find the table (or the query's columns) and check every configured column is there."""
        if self.rel is not None:
            return
        o = self.opts

        def work(conn: Connection) -> tuple[Any, dict[str, type | None]]:
            if o.table:
                schema, _, name = o.table.rpartition(".")
                try:
                    table = sa.Table(name, sa.MetaData(), schema=schema or None,
                                     autoload_with=conn)
                except sa_exc.NoSuchTableError as exc:
                    raise ConfigError(f"sources.{self.name}.table: table {o.table!r} not found "
                                      f"in {self.url} (dropped or renamed?); nothing was deleted "
                                      "from the index") from exc
                return table, {c.name: python_type(c) for c in table.columns}
            query = o.query or ""
            probe = sa.text(f"SELECT * FROM ({query}) AS freshrag_q WHERE 1=0")
            names = list(conn.execute(probe).keys())
            sub = sa.text(query).columns(*(sa.column(n) for n in names)).subquery("freshrag_q")
            sample = conn.execute(sa.select(sub).limit(1)).first()
            kinds = {n: (type(sample._mapping[n]) if sample is not None
                         and sample._mapping[n] is not None else None) for n in names}
            return sub, kinds
        rel, kinds = self.run("reading the table's columns", work)
        for opt in ("key", "cursor", "deleted", "metadata"):
            value = getattr(o, opt)
            for col in [value] if isinstance(value, str) else value or []:
                if col not in kinds:
                    raise ConfigError(f"sources.{self.name}.{opt}: no column {col!r} in "
                                      f"{self.relation_name} (columns: {', '.join(kinds)})")
        for col in [*self.fields, *([self.readers_col] if self.readers_col else [])]:
            opt = "text" if col in self.fields else "permissions"
            if col not in kinds:
                raise ConfigError(f"sources.{self.name}.{opt}: no column {col!r} in "
                                  f"{self.relation_name} (columns: {', '.join(kinds)})")
        self.rel, self.types = rel, kinds

    @property
    def key_cols(self) -> list[Any]:
        return [self.rel.c[k] for k in self.opts.key]

    @property
    def key_kinds(self) -> list[type | None]:
        return [self.types.get(k) for k in self.opts.key]

    def select_rows(self) -> Any:
        return sa.select(*(self.rel.c[c] for c in self.columns))

    def live(self) -> Any:
        """SQL for 'not soft-deleted' (used by reconcile counts; rows are re-checked in Python)."""
        if not self.opts.deleted:
            return sa.true()
        col, kind = self.rel.c[self.opts.deleted], self.types.get(self.opts.deleted)
        if kind is bool:
            return sa.or_(col.is_(None), col == sa.false())
        if kind in (int, float):
            return sa.or_(col.is_(None), col == 0)
        return col.is_(None)

    def key_of(self, row: Row[Any]) -> str:
        m = row._mapping
        values = [m[k] for k in self.opts.key]
        for k, v in zip(self.opts.key, values, strict=True):
            if self.types.get(k) is None and v is not None:
                self.types[k] = type(v)  # a query source learns its key types from rows
        return su.encode_key(values)

    def row_deleted(self, row: Row[Any]) -> bool:
        col = self.opts.deleted
        return col is not None and is_deleted(row._mapping[col])

    def fetch_keys(self, keys: Sequence[tuple[Any, ...]], columns: Any = None) -> list[Row[Any]]:
        rows: list[Row[Any]] = []
        base = columns if columns is not None else self.select_rows()
        for i in range(0, len(keys), FETCH_KEYS):
            stmt = base.where(su.keys_in(self.key_cols, keys[i:i + FETCH_KEYS]))
            rows += self.run("reading rows by key", self._runner(stmt))
        return rows

    # rendering ---------------------------------------------------------------------------------
    def render(self, row: Row[Any], key: str) -> Item | str:
        """The row as an Item, or the reason it cannot be indexed."""
        item = su.render_row(row._mapping, key, self.opts, self.fields,
                             f"{self.relation_name}:{key}")
        if self.readers_col and isinstance(item, Item):
            item = with_readers(item, row._mapping[self.readers_col], self.readers_col)
        return item

    def _remember(self, key: str, item: Item | str, force: bool = False) -> None:
        size = len(item.data) if isinstance(item, Item) else 0
        if force or self._cache_bytes + size <= CACHE_BYTES:
            old = self._cache.get(key)
            self._cache_bytes += size - (len(old.data) if isinstance(old, Item) else 0)
            self._cache[key] = item
        if key not in self._pos:
            self._pos[key] = len(self._order)
            self._order.append(key)

    def _begin(self) -> None:
        self._pending = None
        self._cache.clear()
        self._cache_bytes = 0
        self._order.clear()
        self._pos.clear()

    def _candidate(self, row: Row[Any], key: str, known: Mapping[str, Fingerprint] | None
                   ) -> Candidate | None:
        """known=None: an explicit key (always a candidate); else skip rows already indexed."""
        if self.row_deleted(row):
            self._cache.pop(key, None)
            return Candidate(key, None) if known is None or key in known else None
        item = self.render(row, key)
        if isinstance(item, str):
            mark = (su.cursor_ns(row._mapping[self.opts.cursor]), item)
            if known is not None and self._reported.get(key) == mark:
                return None  # already reported this version of the bad row
            self._reported[key] = mark
            return Candidate(key, None, error=item)
        self._reported.pop(key, None)
        if known is not None and known.get(key) == item.fingerprint:
            return None  # the overlap window re-read a row that is already indexed
        self._remember(key, item)
        return Candidate(key, item.fingerprint)

    def force_reconcile(self) -> None:
        """Make the next scan reconcile even when spaced (after a notify listener reconnects:
        deletes notified while it was down are lost)."""
        self._force_reconcile = True

    def last_poll(self) -> float | None:
        """When the last complete poll started (its changes all written): the index held every
        row change the cursor shows as of then."""
        value = self.load_state().get("polled_at")
        return float(value) if value is not None else None

    def check(self, known: Mapping[str, Fingerprint]) -> list[Candidate]:
        """What a sync would do now (poll and reconcile), read-only: nothing is committed.
        Two attempts per query at most: a freshness check answers within a request's wait."""
        spaced, self.reconcile_spaced = self.reconcile_spaced, False
        retries, self.opts.retries = self.opts.retries, min(self.opts.retries, 2)
        try:
            return list(self.scan(known))
        finally:
            self.reconcile_spaced, self.opts.retries = spaced, retries
            self._begin()

    # Source protocol ------------------------------------------------------------------------------
    def scan(self, known: Mapping[str, Fingerprint]) -> Iterator[Candidate]:
        """Rows past the cursor (minus the overlap window), soft deletes, and the reconcile's
        hard deletes and missed rows (every scan, or on schedule when `reconcile_spaced`).
        The new cursor is kept until commit()."""
        self._begin()
        self._covers = False
        self.resolve()
        polled_at = time.time()
        state = self.load_state()
        pos = ([su.load_value(state["cursor"]), *map(su.load_value, state["key"])]
               if "cursor" in state else None)
        start = su.minus_overlap(pos[0], self.opts.overlap) if pos else None
        after = pos if pos and start is None else None
        cursor_col = self.rel.c[self.opts.cursor]
        seen: set[str] = set()
        gone: set[str] = set()
        newest = pos
        while True:
            stmt = self.select_rows().where(cursor_col.is_not(None))
            if after is not None:
                stmt = stmt.where(su.tuple_gt([cursor_col, *self.key_cols], after))
            elif start is not None:
                stmt = stmt.where(cursor_col >= start)
            stmt = stmt.order_by(cursor_col, *self.key_cols).limit(self.opts.page_size)
            rows = self.run("polling", self._runner(stmt))
            for row in rows:
                key = self.key_of(row)
                seen.add(key)
                if self.row_deleted(row):
                    gone.add(key)
                cand = self._candidate(row, key, known)
                if cand is not None:
                    yield cand
            if rows:
                m = rows[-1]._mapping
                after = [m[self.opts.cursor], *(m[k] for k in self.opts.key)]
                if newest is None or self._later(after, newest):
                    newest = after
            if len(rows) < self.opts.page_size:
                break
        if newest is not None:
            state["cursor"] = su.dump_value(newest[0])
            state["key"] = [su.dump_value(v) for v in newest[1:]]
        due = time.time() - state.get("reconciled_at", 0) >= self.opts.reconcile_every
        forced, self._force_reconcile = self._force_reconcile, False
        if due or forced or not self.reconcile_spaced:
            try:
                yield from self._reconcile((set(known) | seen) - gone, known)
            except BaseException:
                self._force_reconcile = self._force_reconcile or forced  # still owed
                raise
            state["reconciled_at"] = polled_at
            self._covers = True
        state["polled_at"] = polled_at
        self._pending = state

    @staticmethod
    def _later(a: Sequence[Any], b: Sequence[Any]) -> bool:
        try:
            return tuple(a) > tuple(b)
        except TypeError:
            return True

    def _reconcile(self, expected: set[str], known: Mapping[str, Fingerprint]
                   ) -> Iterator[Candidate]:
        from connectors.sql_reconcile import reconcile

        started = time.time()
        missing, extra, queries = reconcile(self, expected)
        self.last_reconcile = {"missing": len(missing), "extra": len(extra), "queries": queries,
                               "seconds": round(time.time() - started, 3)}
        log.info("%s: reconcile %s", self.name, self.last_reconcile)
        doomed = [k for k in missing if k in known]
        if len(doomed) > MASS_DELETE_MIN and len(doomed) > self.opts.max_delete_fraction * len(
                known):
            raise SourceError(
                f"sources.{self.name}: reconcile would delete {len(doomed)} of {len(known)} "
                f"documents, over max_delete_fraction={self.opts.max_delete_fraction}; refusing "
                f"(was {self.relation_name} emptied or replaced?). Nothing was deleted. If this "
                f"is intended, raise sources.{self.name}.max_delete_fraction to 1.0.")
        for key in doomed:
            yield Candidate(key, None)
        yield from self._by_keys(extra, known)

    def candidates(self, keys: list[str]) -> Iterator[Candidate]:
        """Exactly these keys (a notify batch): present rows, None for gone or soft-deleted."""
        self._begin()
        self._covers = True
        self.resolve()
        yield from self._by_keys(list(dict.fromkeys(keys)), None)

    def _by_keys(self, keys: list[str], known: Mapping[str, Fingerprint] | None
                 ) -> Iterator[Candidate]:
        typed: dict[str, tuple[Any, ...]] = {}
        for key in keys:
            try:
                typed[key] = su.decode_key(key, self.key_kinds)
            except ValueError:
                yield Candidate(key, None)  # cannot be a key of this table
        rows = {self.key_of(r): r for r in self.fetch_keys(list(typed.values()))}
        for key in typed:
            row = rows.get(key)
            cand = Candidate(key, None) if row is None else self._candidate(row, key, known)
            if cand is not None:
                yield cand

    def read(self, key: str) -> Item:
        if key not in self._cache:
            self._prefetch(key)
        item = self._cache.pop(key, None)
        if isinstance(item, Item):
            self._cache_bytes -= len(item.data)
        if item is None:
            raise SourceError("row no longer exists (deleted since it was detected)")
        if isinstance(item, str):
            raise SourceError(item)
        return item

    def _prefetch(self, key: str) -> None:
        """Read this row and the next uncached ones of the scan in one query."""
        start = self._pos.get(key)
        keys = [key] if start is None else [
            k for k in self._order[start:start + self.opts.page_size] if k not in self._cache]
        typed = []
        for k in keys:
            try:
                typed.append(su.decode_key(k, self.key_kinds))
            except ValueError:
                continue
        for row in self.fetch_keys(typed):
            k = self.key_of(row)
            self._remember(k, self.render(row, k) if not self.row_deleted(row) else
                           "row was soft-deleted since it was detected", force=True)

    def commit(self) -> None:
        """The index write covering the last scan succeeded: persist the cursor."""
        if self._pending is not None:
            self.ledger.set_source_state(self.name, cursor=json.dumps(self._pending))
            self._pending = None
        if self._covers:
            self.covering_commits += 1
            self._covers = False
        self._cache.clear()
        self._cache_bytes = 0

    def capture_status(self) -> dict[str, Any] | None:
        """The change stream's position and lag; None when the source only polls."""
        from connectors.capture import status

        return status(self.config, self.settings)

    def close(self) -> None:
        self.db.dispose()
