"""Config of the SQL source (validated, errors name `sources.<name>.<key>`) and its DB engines."""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.engine import Engine, make_url

from freshrag.config import ConfigError


class SqlOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str  # postgresql+psycopg://, mysql+pymysql://, sqlite:///path
    table: str | None = None  # "name" or "schema.name"
    query: str | None = None  # a read-only SELECT instead of a table
    key: list[str]  # primary-key column(s)
    text: str  # template over columns: "{title}\n\n{body}"
    metadata: list[str] = []  # columns stored as filterable properties
    # a column of readers (an array, or "user:alice, group:support"); "none": everyone reads
    permissions: str = "none"
    cursor: str  # a column that grows on every change: updated_at, a version number
    deleted: str | None = None  # soft-delete column: truthy (true, 1, a timestamp) = deleted
    # seconds between the watcher's polls of this table; None: the watcher's --poll (5 s)
    poll_interval: float | None = Field(None, gt=0)
    page_size: int = Field(1000, ge=1, le=100_000)
    statement_timeout: float = Field(30.0, gt=0)  # seconds per query
    # Re-read rows whose cursor is up to this much older than the last one seen (seconds for
    # timestamp cursors, units for numeric ones), so rows committed late are not missed.
    overlap: float = Field(300.0, ge=0)
    # seconds between the watcher's hard-delete reconciles (a one-off sync always reconciles)
    reconcile_every: float = Field(3600.0, ge=0)
    max_text_kb: int = Field(1024, gt=0)
    max_delete_fraction: float = Field(0.5, gt=0, le=1)  # a reconcile deleting more stops
    retries: int = Field(5, ge=1)
    notify: bool = False  # alias of capture = "notify"
    notify_channel: str | None = None
    # how the watcher learns of changes besides the cursor poll (connectors.capture)
    capture: Literal["poll", "notify", "changelog", "binlog", "logical"] | None = None
    capture_server_id: int | None = Field(None, ge=1, lt=2**32)  # binlog: our replica id

    @field_validator("key", "metadata", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("key")
    @classmethod
    def _some_key(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one primary-key column")
        return value

    @field_validator("query")
    @classmethod
    def _read_only(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.strip().rstrip(";").strip()
            if not re.match(r"(?is)^\s*(select|with)\b", value) or ";" in value:
                raise ValueError("must be a single read-only SELECT (or WITH ... SELECT)")
        return value

    @field_validator("notify_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[a-z_][a-z0-9_]{0,62}$", value):
            raise ValueError("must be a lowercase identifier of at most 63 characters")
        return value

    @model_validator(mode="after")
    def _one_relation(self) -> SqlOptions:
        if (self.table is None) == (self.query is None):
            raise ValueError("set exactly one of table or query")
        return self


def parse_options(config: Any) -> SqlOptions:
    name = config.name
    opts: SqlOptions = config.parse_options(SqlOptions)
    try:
        fields = template_fields(opts.text)
    except ValueError as exc:
        raise ConfigError(f"sources.{name}.text: bad template: {exc}") from exc
    if not fields:
        raise ConfigError(f"sources.{name}.text: the template names no column ({{column}})")
    if opts.notify and opts.capture not in (None, "notify"):
        raise ConfigError(f"sources.{name}.capture: {opts.capture!r} conflicts with notify = "
                          "true (notify = true means capture = \"notify\"; keep one)")
    if opts.notify and not opts.url.startswith("postgresql"):
        raise ConfigError(f"sources.{name}.notify: only Postgres sources can notify")
    mode = capture_mode(opts)
    engines = CAPTURE_ENGINES[mode]
    try:
        backend = make_url(opts.url).get_backend_name()
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"sources.{name}.url: {exc}") from exc
    if backend in CAPTURE_NAMES and backend not in engines:  # others: make_engine says why
        raise ConfigError(f"sources.{name}.capture: {mode!r} is not supported on {backend} "
                          f"(it needs {' or '.join(CAPTURE_NAMES[e] for e in engines)})")
    if mode != "poll" and not opts.table:
        key = "capture" if opts.capture else "notify"
        raise ConfigError(f"sources.{name}.{key}: needs `table` ({mode} capture cannot watch a "
                          "query; a query source can only be polled)")
    return opts


CAPTURE_ENGINES: dict[str, tuple[str, ...]] = {
    "poll": ("postgresql", "mysql", "mariadb", "sqlite"),
    "notify": ("postgresql",),
    "changelog": ("postgresql", "mysql", "mariadb", "sqlite"),
    "binlog": ("mysql", "mariadb"),
    "logical": ("postgresql",),
}
CAPTURE_NAMES = {"postgresql": "Postgres", "mysql": "MySQL", "mariadb": "MariaDB",
                 "sqlite": "SQLite"}


def capture_mode(opts: SqlOptions) -> str:
    """The source's change capture: `capture`, else "notify" when `notify = true`, else poll."""
    return opts.capture or ("notify" if opts.notify else "poll")


def template_fields(template: str) -> list[str]:
    """Column names a `str.format` template uses ("{title}", "{price:.2f}")."""
    out: list[str] = []
    for _, field, _, _ in string.Formatter().parse(template):
        if field is None:
            continue
        name = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not name or name.isdigit():
            raise ValueError("use column names in braces, e.g. {title}")
        if name not in out:
            out.append(name)
    return out


def display_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def make_engine(opts: SqlOptions, name: str, base_dir: Path, read_only: bool = True) -> Engine:
    """An engine whose sessions have the statement timeout and, unless asked, are read-only."""
    try:
        url = make_url(opts.url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"sources.{name}.url: {exc}") from exc
    backend = url.get_backend_name()
    timeout_ms = int(opts.statement_timeout * 1000)
    if backend == "postgresql":
        options = f"-c statement_timeout={timeout_ms}"
        if read_only:
            options += " -c default_transaction_read_only=on"
        args = {"options": options, "application_name": f"freshrag:{name}"[:63],
                "connect_timeout": 10}
        return sa.create_engine(url, pool_pre_ping=True, pool_size=2, connect_args=args)
    if backend in ("mysql", "mariadb"):
        engine = sa.create_engine(url, pool_pre_ping=True, pool_size=2, pool_recycle=3600,
                                  connect_args={"connect_timeout": 10,
                                                "read_timeout": int(opts.statement_timeout) + 30})

        @sa.event.listens_for(engine, "connect")
        def _mysql_session(dbapi_conn: Any, _record: Any) -> None:
            with dbapi_conn.cursor() as cur:
                if "mariadb" in dbapi_conn.get_server_info().lower():
                    cur.execute(f"SET SESSION max_statement_time={opts.statement_timeout:.3f}")
                else:
                    cur.execute(f"SET SESSION max_execution_time={timeout_ms}")
                if read_only:
                    cur.execute("SET SESSION TRANSACTION READ ONLY")
        return engine
    if backend == "sqlite":
        path = url.database or ""
        if path and path != ":memory:" and not path.startswith("file:"):
            file = Path(path) if Path(path).is_absolute() else base_dir / path
            if not file.is_file():
                raise ConfigError(f"sources.{name}.url: SQLite file {file} not found")
            url = url.set(database=str(file))
        engine = sa.create_engine(url, connect_args={"timeout": opts.statement_timeout})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_session(dbapi_conn: Any, _record: Any) -> None:
            # bad UTF-8 in a TEXT value becomes one row's error, not a failed page
            dbapi_conn.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
            from connectors.sql_reconcile import key_hash

            dbapi_conn.create_function("freshrag_key_hash", 1, lambda t: key_hash([t]),
                                       deterministic=True)
            if read_only:
                dbapi_conn.execute("PRAGMA query_only = ON")
        return engine
    raise ConfigError(f"sources.{name}.url: unsupported database {backend!r} (use "
                      "postgresql+psycopg://, mysql+pymysql:// or sqlite:///)")
