"""`freshrag verify`, and how a sync that cannot go on (busy, index or source down) exits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from freshrag.cli_common import ConfigOpt, HomeOpt, JsonOpt, _die, settings_for
from freshrag.config import ConfigError, Settings

SourcesArg = Annotated[list[str] | None, typer.Argument(help="Sources (default: all).")]
FolderOpt = Annotated[Path | None, typer.Option(
    "--folder", help="A folder without a config file (the source is named after it).")]
WaitOpt = Annotated[float, typer.Option(
    "--wait", min=0, envvar="FRESHRAG_LOCK_WAIT_S",
    help="Seconds to wait while another process syncs the same source (then exit 1).")]


def source_names(settings: Settings, sources: list[str] | None, folder: Path | None
                 ) -> list[str]:
    """The sources a command acts on: those named, the --folder one, or all configured."""
    if folder is not None and not sources:
        sources = [settings.sources[-1].name]
    names = sources or [s.name for s in settings.sources]
    if not names:
        _die("no sources: pass --folder PATH or configure [[sources]] in freshrag.toml")
    try:
        for name in names:
            settings.source(name)
    except ConfigError as exc:
        _die(str(exc))
    return names


def stopped(exc: BaseException, writing: bool = True) -> NoReturn:
    """Exit 1 for a run that could not go on (busy source, index, ledger or source down, lock
    lost), 2 for configuration (a bad key, a model that cannot be loaded, a ledger URL that
    names no database driver, an index that refused the settings); anything else is a bug and
    propagates. `writing`: a sync or a repair (the message says nothing past the last write
    was committed)."""
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from connectors import SourceError
    from freshrag.embed import EmbedError
    from freshrag.index import IndexMisconfigured, IndexUnavailable
    from freshrag.lock import LockLost, SourceBusy

    if isinstance(exc, ConfigError):
        _die(str(exc))
    if isinstance(exc, IndexMisconfigured):
        _die(f"index configuration refused, nothing was retried: {exc}")
    if isinstance(exc, EmbedError):
        _die(f"model.name: {exc}")
    if isinstance(exc, ArgumentError | NoSuchModuleError):
        _die(f"ledger_url: {exc}")
    if isinstance(exc, SourceBusy):
        _die(str(exc), 1)
    labels = ((IndexUnavailable, "index unavailable"), (SourceError, "source unavailable"),
              (LockLost, "lock lost"), (DBAPIError, "ledger unavailable"))
    for kind, label in labels:
        if isinstance(exc, kind):
            orig = getattr(exc, "orig", None)  # a driver's error: its first line says it
            reason = str(orig).splitlines()[0] if isinstance(exc, DBAPIError) and orig else exc
            if writing:
                _die(f"{label}, sync stopped (nothing past the last write was committed): "
                     f"{reason}", 1)
            _die(f"{label}: {reason}", 1)
    raise exc


def verify(
    sources: SourcesArg = None, folder: FolderOpt = None,
    repair: Annotated[bool, typer.Option(
        "--repair", help="Fix what is found by replaying the engine on the affected documents "
        "and deleting orphans, then verify again.")] = False,
    deep: Annotated[bool, typer.Option(
        "--deep", help="Re-parse every document instead of trusting the ledger's chunk hashes "
        "for files whose fingerprint is unchanged.")] = False,
    config: ConfigOpt = None, home: HomeOpt = None, as_json: JsonOpt = False,
    wait: WaitOpt = 60.0,
) -> None:
    """Compare sources, ledger and index: missing, orphaned, stale and duplicate chunks.
    Exit 0 when they agree, 1 on drift (after --repair: on drift that remains)."""
    settings = settings_for(config, home, folder)
    names = source_names(settings, sources, folder)
    from freshrag.engine import Engine
    from freshrag.verify import Verifier

    try:
        engine = Engine(settings)
    except Exception as exc:
        stopped(exc, writing=False)
    engine.lock_wait_s = wait
    repaired: list[dict[str, Any]] = []
    try:
        verifier = Verifier(engine, deep=deep)
        drift = verifier.verify(names)
        if repair and not drift.ok:
            if not as_json:
                _print_drift(drift, "found", err=True)
            repaired = verifier.repair(drift)
            drift = verifier.verify(names)
    except Exception as exc:
        stopped(exc)
    finally:
        engine.close()
    if as_json:
        typer.echo(json.dumps({**drift.to_json(), **({"repaired": repaired} if repair else {})}))
    else:
        for item in repaired:
            typer.echo(f"repaired: {item['kind']}: {item['source']}: {item['key']}: "
                       f"{item['action']}")
        _print_drift(drift, "after repair" if repair else "checked")
    raise typer.Exit(0 if drift.ok else 1)


def _print_drift(drift: Any, label: str, err: bool = False) -> None:
    from freshrag.verify import KINDS

    if drift.ok:
        typer.echo(f"ok: sources, ledger and index agree ({label})", err=err)
    for kind in KINDS:
        for item in getattr(drift, kind):
            detail = {k: v for k, v in item.items() if k not in ("source", "key", "ids")}
            typer.echo(f"{kind}: {item['source']}: {item['key']} {json.dumps(detail)}", err=err)
    if drift.unindexable and not err:
        typer.echo(f"{len(drift.unindexable)} documents cannot be indexed (reasons: freshrag "
                   "status)", err=True)
