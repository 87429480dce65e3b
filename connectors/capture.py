"""Change capture of SQL sources: install, verify and remove what each mode needs in the database.

Modes (`capture = ...` per source, see connectors.sql_options.CAPTURE_ENGINES): `poll` (the
cursor poll alone), `notify` (Postgres trigger + LISTEN), `changelog` (row triggers filling a
freshrag-owned table), `binlog` (MySQL/MariaDB ROW binlog) and `logical` (a Postgres logical
replication slot). The cursor poll always runs as the safety net.

freshrag's sessions are read-only by design; installing, trimming the changelog and advancing
a slot use a separate writable engine (`writable`), so the changelog needs write privilege on
its own table only."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from connectors.capture_sql import CapturePlan, build
from connectors.sql_options import capture_mode, make_engine, parse_options
from freshrag.config import ConfigError

log = logging.getLogger("freshrag.capture")
Echo = Callable[[str], None]
STREAMS = ("notify", "changelog", "binlog", "logical")


def mode_of(config: Any) -> str:
    return capture_mode(parse_options(config))


def plan(config: Any, mode: str | None = None) -> CapturePlan:
    """The exact SQL for one `[[sources]]` entry of type sql (its own mode unless given)."""
    opts = parse_options(config)
    mode = mode or capture_mode(opts)
    if mode == "poll":
        raise ConfigError(f"sources.{config.name}.capture: the source only polls (capture = "
                          "\"poll\"); set capture to notify, changelog, binlog or logical")
    if mode == "notify" and not opts.url.startswith("postgresql"):
        raise ConfigError(f"sources.{config.name}.notify: only Postgres sources can notify")
    if not opts.table:
        raise ConfigError(f"sources.{config.name}.capture: {mode!r} needs `table` (a query "
                          "source can only be polled)")
    return build(config.name, opts, mode)


def writable(config: Any, base_dir: Path | str = ".") -> Engine:
    """A small engine whose sessions may write (capture install, changelog trim, slot advance)."""
    opts = parse_options(config)
    return make_engine(opts, config.name, Path(base_dir), read_only=False)


def describe(p: CapturePlan, verb: str = "creates") -> str:
    stmts = p.install if verb == "creates" else p.uninstall
    sql = ";\n".join(stmts) + ";" if stmts else "-- no SQL"
    lines = [f"freshrag {p.mode} capture for source {p.source!r} {verb} in {p.url}:",
             *(f"  {line}" for line in p.summary), "", sql, ""]
    if verb == "creates":
        undo = "notify-uninstall" if p.mode == "notify" else "capture-uninstall"
        lines.append(f"Undo with: freshrag sql {undo} {p.source}")
    return "\n".join(lines)


def _run(engine: Engine, stmts: list[str]) -> None:
    """Each statement through the driver as written (no parameter parsing), one transaction
    where the engine has transactional DDL."""
    with engine.begin() as conn:
        raw = conn.execution_options(no_parameters=True)
        for stmt in stmts:
            raw.exec_driver_sql(stmt)


def _rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        result = conn.execution_options(no_parameters=True).exec_driver_sql(sql)
        return [tuple(r) for r in result.all()]


def check_server(p: CapturePlan, engine: Engine) -> None:
    """ConfigError (one line naming sources.X.capture) when the server cannot do the mode."""
    for sql, wanted, why in p.require:
        got = _rows(engine, sql)
        value = str(got[0][0]) if got else ""
        if value.lower() != wanted.lower():
            raise ConfigError(f"sources.{p.source}.capture: {p.mode!r} {why}; {p.url} has "
                              f"{sql.split()[-1].lstrip('@')} = {value or 'unset'}")


def is_current(p: CapturePlan, engine: Engine) -> bool:
    """Everything the plan creates is in place, as this config would create it."""
    if p.probe is None:
        return True
    have = {str(r[0]): r[1] for r in _rows(engine, p.probe)}
    for name, body in p.expect.items():
        if name not in have:
            return False
        if body is not None and str(have[name]).strip() != body.strip():
            return False
    return True


def installed(config: Any, base_dir: Path | str = ".", mode: str | None = None) -> bool:
    p = plan(config, mode)
    engine = writable(config, base_dir)
    try:
        return p.probe is not None and bool(_rows(engine, p.probe))
    finally:
        engine.dispose()


def install(config: Any, echo: Echo | None = print, base_dir: Path | str = ".",
            mode: str | None = None) -> CapturePlan:
    """Create (or replace) what the mode needs; print what it is first."""
    p = plan(config, mode)
    if echo:
        echo(describe(p, "creates"))
    engine = writable(config, base_dir)
    try:
        check_server(p, engine)
        if p.install:
            _run(engine, p.install)
    finally:
        engine.dispose()
    return p


def uninstall(config: Any, echo: Echo | None = print, base_dir: Path | str = ".",
              mode: str | None = None) -> CapturePlan:
    p = plan(config, mode)
    if echo:
        echo(describe(p, "drops"))
    engine = writable(config, base_dir)
    try:
        if p.uninstall:
            _run(engine, p.uninstall)
    finally:
        engine.dispose()
    return p


def ensure(config: Any, base_dir: Path | str = ".", mode: str | None = None) -> bool:
    """Install unless what this config needs is in place; True when it was installed.
    ConfigError (one line naming the source) when the server cannot do the mode, the table is
    missing or the role may not create it; sa.exc.OperationalError when unreachable."""
    p = plan(config, mode)
    key = "notify" if p.mode == "notify" and not parse_options(config).capture else "capture"
    engine = writable(config, base_dir)
    try:
        check_server(p, engine)
        if is_current(p, engine):
            return False
        _run(engine, p.install)
        return True
    except sa.exc.DBAPIError as exc:  # no privilege, no such table or schema
        if not refused(exc):
            raise
        what = "notify trigger" if p.mode == "notify" else f"{p.mode} capture"
        raise ConfigError(
            f"sources.{p.source}.{key}: cannot install the {what} on {p.table} in "
            f"{p.url}: {first_line(exc)} (grant the role what it needs, run `freshrag sql "
            f"{'notify' if key == 'notify' else 'capture'}-install {p.source}` as the table's "
            f"owner, or set {key} = {'false' if key == 'notify' else chr(34) + 'poll' + chr(34)}"
            ")") from exc
    finally:
        engine.dispose()


_REFUSED = ("no such table", "does not exist", "doesn't exist", "denied", "permission",
            "privilege", "read-only", "readonly", "unknown table")


def refused(exc: sa.exc.DBAPIError) -> bool:
    """The server answered no (privilege, missing table), as opposed to being unreachable."""
    if isinstance(exc, sa.exc.ProgrammingError):
        return True
    return any(m in first_line(exc).lower() for m in _REFUSED)


def status(config: Any, settings: Any) -> dict[str, Any] | None:
    """The change stream's position and lag (binlog position, slot lag and retained WAL,
    changelog backlog), for a table's freshness; None when the source only polls."""
    mode = mode_of(config)
    base = getattr(settings, "base_dir", ".")
    if mode == "binlog":
        from connectors import binlog

        return binlog.status(config, settings.home)
    if mode == "changelog":
        from connectors import changelog

        return changelog.status(config, base)
    if mode == "logical":
        from connectors import pg_logical

        return pg_logical.status(config, base)
    return {"mode": mode} if mode != "poll" else None


def first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
