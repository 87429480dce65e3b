"""`freshrag sql ...`: install and remove the Postgres LISTEN/NOTIFY trigger of a SQL source."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from freshrag.cli_common import ConfigOpt, HomeOpt, _die, settings_for
from freshrag.config import ConfigError

sql_app = typer.Typer(no_args_is_help=True, add_completion=False,
                      help="SQL table sources: the Postgres notify trigger.")
SourceArg = Annotated[str, typer.Argument(help="Name of a [[sources]] entry of type sql.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the SQL, change nothing.")]


def _config(source: str, config: Any, home: Any) -> Any:
    settings = settings_for(config, home)
    try:
        cfg = settings.source(source)
    except ConfigError as exc:
        _die(str(exc))
    if cfg.type != "sql":
        _die(f"sources.{source}: type is {cfg.type!r}, not 'sql'")
    return cfg


def _notify(source: str, config: Any, home: Any, dry_run: bool, install: bool) -> None:
    from connectors import pg_notify

    cfg = _config(source, config, home)
    verb, done = ("creates", "installed") if install else ("drops", "uninstalled")
    try:
        if dry_run:
            typer.echo(pg_notify.describe(pg_notify.plan(cfg), verb))
            return
        (pg_notify.install if install else pg_notify.uninstall)(cfg, echo=typer.echo)
    except ConfigError as exc:
        _die(str(exc))
    except Exception as exc:  # psycopg errors: no server, no privilege
        action = "installing" if install else "removing"
        _die(f"sources.{source}: {action} the notify trigger failed: {exc}", 1)
    typer.echo(done)


@sql_app.command("notify-install")
def notify_install(source: SourceArg, config: ConfigOpt = None, home: HomeOpt = None,
                   dry_run: DryRun = False) -> None:
    """Create the trigger that pg_notify's changed keys (prints exactly what it creates)."""
    _notify(source, config, home, dry_run, install=True)


@sql_app.command("notify-uninstall")
def notify_uninstall(source: SourceArg, config: ConfigOpt = None, home: HomeOpt = None,
                     dry_run: DryRun = False) -> None:
    """Drop the trigger and its function (the table itself is not touched)."""
    _notify(source, config, home, dry_run, install=False)
