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


@sql_app.command("notify-install")
def notify_install(source: SourceArg, config: ConfigOpt = None, home: HomeOpt = None,
                   dry_run: DryRun = False) -> None:
    """Create the trigger that pg_notify's changed keys (prints exactly what it creates)."""
    from connectors import pg_notify

    cfg = _config(source, config, home)
    try:
        if dry_run:
            typer.echo(pg_notify.describe(pg_notify.plan(cfg), "creates"))
            return
        pg_notify.install(cfg, echo=typer.echo)
    except ConfigError as exc:
        _die(str(exc))
    except Exception as exc:  # psycopg errors: no server, no privilege
        _die(f"sources.{source}: installing the notify trigger failed: {exc}", 1)
    typer.echo("installed")


@sql_app.command("notify-uninstall")
def notify_uninstall(source: SourceArg, config: ConfigOpt = None, home: HomeOpt = None,
                     dry_run: DryRun = False) -> None:
    """Drop the trigger and its function (the table itself is not touched)."""
    from connectors import pg_notify

    cfg = _config(source, config, home)
    try:
        if dry_run:
            typer.echo(pg_notify.describe(pg_notify.plan(cfg), "drops"))
            return
        pg_notify.uninstall(cfg, echo=typer.echo)
    except ConfigError as exc:
        _die(str(exc))
    except Exception as exc:
        _die(f"sources.{source}: removing the notify trigger failed: {exc}", 1)
    typer.echo("uninstalled")
