"""`freshrag sql ...`: install and remove a SQL source's change capture (triggers, slot)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from freshrag.cli_common import ConfigOpt, HomeOpt, _die, settings_for
from freshrag.config import ConfigError

sql_app = typer.Typer(no_args_is_help=True, add_completion=False,
                      help="SQL table sources: change capture (notify, changelog, binlog, "
                           "logical).")
SourceArg = Annotated[str, typer.Argument(help="Name of a [[sources]] entry of type sql.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the SQL, change nothing.")]


def _config(source: str, config: Any, home: Any) -> tuple[Any, Any]:
    settings = settings_for(config, home)
    try:
        cfg = settings.source(source)
    except ConfigError as exc:
        _die(str(exc))
    if cfg.type != "sql":
        _die(f"sources.{source}: type is {cfg.type!r}, not 'sql'")
    return cfg, settings


def _apply(source: str, config: Any, home: Any, dry_run: bool, install: bool,
           mode: str | None) -> None:
    """The one path of every install/uninstall command (connectors.capture)."""
    from connectors import capture

    cfg, settings = _config(source, config, home)
    verb, done = ("creates", "installed") if install else ("drops", "uninstalled")
    base = getattr(settings, "base_dir", ".")
    try:
        p = capture.plan(cfg, mode)
        if dry_run:
            typer.echo(capture.describe(p, verb))
            return
        if install:
            capture.install(cfg, echo=typer.echo, base_dir=base, mode=mode)
        else:
            capture.uninstall(cfg, echo=typer.echo, base_dir=base, mode=mode)
            if p.mode == "binlog":
                from connectors.binlog import forget

                forget(cfg, settings.home)
    except ConfigError as exc:
        _die(str(exc))
    except Exception as exc:  # driver errors: no server, no privilege
        action = "installing" if install else "removing"
        what = "the notify trigger" if mode == "notify" else "the change capture"
        _die(f"sources.{source}: {action} {what} failed: {capture.first_line(exc)}", 1)
    typer.echo(done)


@sql_app.command("capture-install")
def capture_install(source: SourceArg, config: ConfigOpt = None, home: HomeOpt = None,
                    dry_run: DryRun = False) -> None:
    """Create what the source's `capture` mode needs (prints exactly what it creates)."""
    _apply(source, config, home, dry_run, install=True, mode=None)


@sql_app.command("capture-uninstall")
def capture_uninstall(source: SourceArg, config: ConfigOpt = None, home: HomeOpt = None,
                      dry_run: DryRun = False) -> None:
    """Drop the source's triggers, changelog table or replication slot (not the table)."""
    _apply(source, config, home, dry_run, install=False, mode=None)


@sql_app.command("notify-install")
def notify_install(source: SourceArg, config: ConfigOpt = None, home: HomeOpt = None,
                   dry_run: DryRun = False) -> None:
    """Create the trigger that pg_notify's changed keys (prints exactly what it creates)."""
    _apply(source, config, home, dry_run, install=True, mode="notify")


@sql_app.command("notify-uninstall")
def notify_uninstall(source: SourceArg, config: ConfigOpt = None, home: HomeOpt = None,
                     dry_run: DryRun = False) -> None:
    """Drop the trigger and its function (the table itself is not touched)."""
    _apply(source, config, home, dry_run, install=False, mode="notify")
