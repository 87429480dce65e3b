"""Postgres fast path for SQL sources: a trigger that pg_notify's row keys, and a LISTEN loop.

The trigger is created, checked and dropped by connectors.capture (mode "notify"), the same
mechanism as every other capture mode; this module adds the LISTEN loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from connectors import capture
from connectors.capture_sql import CapturePlan
from connectors.sql_options import parse_options
from freshrag.config import ConfigError

log = logging.getLogger("freshrag.pg_notify")
Echo = Callable[[str], None]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def plan(config: Any) -> CapturePlan:
    """The trigger and function for one `[[sources]]` entry of type sql with a Postgres table."""
    return capture.plan(config, "notify")


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


def describe(p: CapturePlan, verb: str = "creates") -> str:
    return capture.describe(p, verb)


def installed(config: Any, base_dir: Path | str = ".") -> bool:
    return capture.installed(config, base_dir, "notify")


def install(config: Any, echo: Echo | None = print, base_dir: Path | str = ".") -> CapturePlan:
    """Create (or replace) the trigger and its function in one transaction; print what it is."""
    return capture.install(config, echo, base_dir, "notify")


def uninstall(config: Any, echo: Echo | None = print, base_dir: Path | str = ".") -> CapturePlan:
    return capture.uninstall(config, echo, base_dir, "notify")


def ensure(config: Any, base_dir: Path | str = ".") -> bool:
    """Install the trigger unless the current one is in place; True when it was installed."""
    return capture.ensure(config, base_dir, "notify")


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

    if capture.mode_of(config) != "notify":
        raise ConfigError(f"sources.{config.name}.notify: set notify = true to use the "
                          "LISTEN/NOTIFY fast path")
    p = plan(config)
    delay, connections = 0.5, 0
    while not stop.is_set():
        try:
            with _connect(config, autocommit=True) as conn:
                if install_missing and not conn.execute(
                        "SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = %s::regclass",
                        (next(iter(p.expect)), p.table)).fetchone():
                    install(config, echo)
                conn.execute(f"LISTEN {_ident(p.channel or '')}")
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
