"""Postgres fast path for SQL sources: a trigger that pg_notify's row keys, and a LISTEN loop."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from connectors.sql_options import display_url, parse_options
from freshrag.config import ConfigError

log = logging.getLogger("freshrag.pg_notify")
Echo = Callable[[str], None]


@dataclass(frozen=True)
class NotifyPlan:
    """What the fast path creates for one source, and how to remove it."""

    source: str
    url: str  # password hidden
    table: str
    channel: str
    trigger: str
    function: str
    install: list[str]
    uninstall: list[str]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "source"


def _key_sql(rec: str, key: list[str]) -> str:
    """The doc key of OLD/NEW in SQL, encoded exactly like connectors.sql_util.encode_key for
    integer, text and uuid key columns."""
    if len(key) == 1:
        return f"{rec}.{_ident(key[0])}::text"
    parts = [f"replace(replace({rec}.{_ident(k)}::text, '%', '%25'), '/', '%2F')" for k in key]
    return " || '/' || ".join(parts)


def plan(config: Any) -> NotifyPlan:
    """The exact SQL for one `[[sources]]` entry of type sql with a table on Postgres."""
    opts = parse_options(config)
    name = config.name
    if not opts.url.startswith("postgresql"):
        raise ConfigError(f"sources.{name}.notify: only Postgres sources can notify")
    if not opts.table:
        raise ConfigError(f"sources.{name}.notify: needs `table` (a trigger cannot watch a query)")
    schema, _, table = opts.table.rpartition(".")
    prefix = f"{_ident(schema)}." if schema else ""
    qtable = prefix + _ident(table)
    slug = _slug(name)
    channel = opts.notify_channel or f"freshrag_{slug}"[:63]
    trigger = f"freshrag_notify_{slug}"[:63]
    function = prefix + _ident(trigger)
    old, new = _key_sql("OLD", opts.key), _key_sql("NEW", opts.key)
    body = (
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $fr$\n"
        f"BEGIN\n"
        f"  IF TG_OP IN ('UPDATE', 'DELETE') THEN PERFORM pg_notify('{channel}', {old}); END IF;\n"
        f"  IF TG_OP IN ('INSERT', 'UPDATE') THEN PERFORM pg_notify('{channel}', {new}); END IF;\n"
        f"  RETURN NULL;\n"
        f"END $fr$")
    install = [
        body,
        f"DROP TRIGGER IF EXISTS {_ident(trigger)} ON {qtable}",
        f"CREATE TRIGGER {_ident(trigger)} AFTER INSERT OR UPDATE OR DELETE ON {qtable} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()",
    ]
    uninstall = [f"DROP TRIGGER IF EXISTS {_ident(trigger)} ON {qtable}",
                 f"DROP FUNCTION IF EXISTS {function}()"]
    return NotifyPlan(name, display_url(opts.url), qtable, channel, trigger, function,
                      install, uninstall)


def connect_kwargs(url: str) -> dict[str, Any]:
    """psycopg.connect() arguments for a SQLAlchemy Postgres URL."""
    u = make_url(url)
    kw: dict[str, Any] = {k: v for k, v in {"host": u.host, "port": u.port, "user": u.username,
                                             "password": u.password, "dbname": u.database}.items()
                          if v is not None}
    kw.update({k: v for k, v in u.query.items() if isinstance(v, str)})
    kw.setdefault("connect_timeout", 10)
    return kw


def _connect(config: Any, autocommit: bool = False) -> Any:
    import psycopg

    kw = connect_kwargs(parse_options(config).url)
    kw.setdefault("application_name", f"freshrag-notify:{config.name}"[:63])
    return psycopg.connect(autocommit=autocommit, **kw)


def _is_installed(conn: Any, p: NotifyPlan) -> bool:
    row = conn.execute("SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = %s::regclass",
                       (p.trigger, p.table)).fetchone()
    return row is not None


def _is_current(conn: Any, p: NotifyPlan) -> bool:
    """The trigger is on the table and runs exactly the function this config would create."""
    row = conn.execute("SELECT p.prosrc FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
                       "WHERE t.tgname = %s AND t.tgrelid = %s::regclass",
                       (p.trigger, p.table)).fetchone()
    return row is not None and row[0] == p.install[0].split("$fr$")[1]


def ensure(config: Any) -> bool:
    """Install the trigger unless the current one is in place; True when it was installed.
    ConfigError (one line naming the source) when the table is missing or the role may not
    create the trigger; psycopg.OperationalError when the database cannot be reached."""
    import psycopg

    p = plan(config)
    try:
        with _connect(config, autocommit=True) as conn:
            if _is_current(conn, p):
                return False
        install(config, echo=None)
        return True
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedTable,
            psycopg.errors.InvalidSchemaName) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"sources.{p.source}.notify: cannot install the notify trigger on {p.table} in "
            f"{p.url}: {reason} (grant the role TRIGGER on the table, run `freshrag sql "
            f"notify-install {p.source}` as its owner, or set notify = false)") from exc


def describe(p: NotifyPlan, verb: str = "creates") -> str:
    sql = ";\n".join(p.install if verb == "creates" else p.uninstall) + ";"
    lines = [f"freshrag notify for source {p.source!r} {verb} in {p.url}:",
             f"  trigger {p.trigger} on {p.table} (AFTER INSERT OR UPDATE OR DELETE, per row)",
             f"  function {p.function}() sending each changed row's key on channel "
             f"{p.channel!r}", "", sql, ""]
    if verb == "creates":
        lines.append(f"Undo with: freshrag sql notify-uninstall {p.source}")
    return "\n".join(lines)


def installed(config: Any) -> bool:
    p = plan(config)
    with _connect(config, autocommit=True) as conn:
        return _is_installed(conn, p)


def install(config: Any, echo: Echo | None = print) -> NotifyPlan:
    """Create (or replace) the trigger and its function in one transaction; print what it is."""
    p = plan(config)
    if echo:
        echo(describe(p, "creates"))
    with _connect(config) as conn, conn.transaction():
        for stmt in p.install:
            conn.execute(stmt)
    return p


def uninstall(config: Any, echo: Echo | None = print) -> NotifyPlan:
    p = plan(config)
    if echo:
        echo(describe(p, "drops"))
    with _connect(config) as conn, conn.transaction():
        for stmt in p.uninstall:
            conn.execute(stmt)
    return p


def listen(config: Any, on_keys: Callable[[list[str]], None], stop: threading.Event, *,
           window: float = 0.05, install_missing: bool = True,
           ready: threading.Event | None = None, echo: Echo | None = print,
           on_connect: Callable[[int], None] | None = None) -> None:
    """LISTEN on the source's channel until `stop` is set; call `on_keys` with each batch of
    changed doc keys (collected for `window` seconds after the first, de-duplicated).

    Installs the trigger first when it is missing and `install_missing` (the source's
    `notify = true` is the opt-in). A lost connection is re-opened with backoff; notifications
    sent while it was down are lost, which the source's cursor poll covers: `on_connect(n)`
    is called once LISTEN is in place on the n-th connection (n > 1: a rescan is due)."""
    import psycopg

    if not parse_options(config).notify:
        raise ConfigError(f"sources.{config.name}.notify: set notify = true to use the "
                          "LISTEN/NOTIFY fast path")
    p = plan(config)
    delay, connections = 0.5, 0
    while not stop.is_set():
        try:
            with _connect(config, autocommit=True) as conn:
                if install_missing and not _is_installed(conn, p):
                    install(config, echo)
                conn.execute(f"LISTEN {_ident(p.channel)}")
                delay, connections = 0.5, connections + 1
                if connections > 1:
                    log.warning("%s: LISTEN connection re-established", p.source)
                if on_connect is not None:
                    on_connect(connections)
                if ready is not None:
                    ready.set()
                while not stop.is_set():
                    keys = [n.payload for n in conn.notifies(timeout=0.5, stop_after=1)]
                    if not keys:
                        continue
                    keys += [n.payload for n in conn.notifies(timeout=window)]
                    try:
                        on_keys(list(dict.fromkeys(keys)))
                    except Exception:  # the poll will catch up; keep listening
                        log.exception("%s: handling notified keys failed", p.source)
        except psycopg.OperationalError as exc:
            log.warning("%s: LISTEN connection lost (%s); reconnecting in %.1f s",
                        p.source, str(exc).strip().splitlines()[0] if str(exc) else exc, delay)
            stop.wait(delay)
            delay = min(delay * 2, 30.0)
