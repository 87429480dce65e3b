"""The `freshrag` command line: sync, search, status, verify, serve."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from connectors.permissions import PRINCIPAL_RE
from freshrag.cli_backfill import ClusterOpt, WorkersOpt
from freshrag.cli_common import ConfigOpt, HomeOpt, JsonOpt, _die, check_clients, settings_for
from freshrag.cli_sql import sql_app
from freshrag.cli_verify import FolderOpt, SourcesArg, WaitOpt, source_names, stopped, verify
from freshrag.config import Settings
from freshrag.model import EVERYONE, Filters, Mode, SyncReport

SHOW_SKIPPED = 20  # skipped files listed by a sync's text output
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Keep a retrieval index true to folders and tables that keep changing.")


def _version(value: bool) -> None:
    if value:
        from freshrag import __version__

        typer.echo(f"freshrag {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Path to freshrag.toml (before or after the command).")] = None,
    home: Annotated[Path | None, typer.Option(
        "--home", help="State folder (before or after the command).")] = None,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")]
    = False,
) -> None:
    """Keep a retrieval index true to folders and tables that keep changing."""
    # Given before the command, they act as FRESHRAG_CONFIG / FRESHRAG_HOME for this run, so
    # every command (and `sql ...`) sees them; the same option after the command wins.
    if config is not None:
        os.environ["FRESHRAG_CONFIG"] = str(config.absolute())
    if home is not None:
        os.environ["FRESHRAG_HOME"] = str(home.absolute())

def _engine(settings: Settings) -> Any:
    from freshrag.engine import Engine

    try:
        return Engine(settings)
    except Exception as exc:  # the ledger cannot be opened: one line, never a traceback
        stopped(exc, writing=False)


def _sync_one(engine: Any, name: str, show_bar: bool) -> SyncReport:
    if not show_bar:
        report: SyncReport = engine.sync(name)
        return report
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(f"sync {name}", total=None)
        report = engine.sync(name, progress=lambda done, of: bar.update(
            task, completed=done, total=of))
    return report


@app.command()
def sync(
    sources: SourcesArg = None, folder: FolderOpt = None, config: ConfigOpt = None,
    home: HomeOpt = None, as_json: JsonOpt = False, wait: WaitOpt = 60.0,
    workers: WorkersOpt = None, cluster: ClusterOpt = None,
) -> None:
    """Index what changed in the sources since the last sync."""
    settings = settings_for(config, home, folder)
    names = source_names(settings, sources, folder)
    if workers is not None or cluster is not None:
        from freshrag.cli_backfill import backfill

        _report(backfill(settings, names, workers, cluster, config, folder), as_json)
    engine = _engine(settings)
    engine.lock_wait_s = wait
    total = SyncReport()
    show_bar = sys.stderr.isatty() and not as_json
    try:
        for name in names:
            total.merge(_sync_one(engine, name, show_bar))
    except Exception as exc:
        stopped(exc)
    finally:
        engine.close()
    _report(total, as_json)


def _report(total: SyncReport, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(total.to_json()))
    else:
        _print_report(total)
    raise typer.Exit(1 if total.failed else 0)


def _print_report(report: SyncReport) -> None:
    d = report.to_json()
    docs = ", ".join(f"{v} {k}" for k, v in d["documents"].items() if v)
    chunks = ", ".join(f"{v} {k}" for k, v in d["chunks"].items() if v)
    typer.echo(f"documents: {docs or 'no changes'}")
    typer.echo(f"chunks: {chunks or 'none written'}")
    for item in report.skipped_items[:SHOW_SKIPPED]:
        typer.echo(f"skipped: {item['source']}: {item['key']}: {item['reason']}")
    if report.skipped > SHOW_SKIPPED:
        typer.echo(f"skipped: ... and {report.skipped - SHOW_SKIPPED} more (sync --json lists "
                   "them all)")
    for err in report.errors:
        typer.echo(f"error: {err['source']}: {err['key']}: {err['error']}", err=True)
    for c in report.closed:
        typer.echo(f"readers unknown: {c['source']}: {c['key']}: {c['reason']} (indexed; "
                   "nobody may read it but admins)", err=True)
    typer.echo(f"took {report.seconds:.2f} s")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="How many hits.")] = 5,
    mode: Annotated[Mode, typer.Option("--mode", help="hybrid, vector or keyword.")]
    = Mode.hybrid,
    source: Annotated[str | None, typer.Option("--source", help="Only this source.")] = None,
    principals: Annotated[list[str] | None, typer.Option(
        "--as", help="Search as this principal (user:alice, group:hr, uid:1001, ...): only "
        "what it may read. Repeat for each of a user's principals.")] = None,
    config: ConfigOpt = None, home: HomeOpt = None, as_json: JsonOpt = False,
) -> None:
    """Search the index."""
    if not query.strip():
        _die("query is empty")
    for p in principals or []:
        if p != EVERYONE and not PRINCIPAL_RE.match(p):
            _die(f"--as {p!r}: not a principal (kind:name, e.g. user:alice, group:hr, uid:1001)")
    settings = settings_for(config, home)
    engine = _engine(settings)
    try:
        if source is not None:
            known = list(dict.fromkeys([s.name for s in settings.sources]
                                       + engine.ledger.sources()))
            if source not in known:
                _die(f"--source: unknown source {source!r} (known: "
                     f"{', '.join(known) or 'none'})")
        filters = Filters(source=source, principals=frozenset(principals)
                          if principals is not None else None)
        hits = engine.search(query, k, mode, filters=filters if source or principals else None)
    except typer.Exit:
        raise
    except Exception as exc:
        stopped(exc, writing=False)
    finally:
        engine.close()
    if as_json:
        typer.echo(json.dumps([h.to_json() for h in hits]))
        return
    if not hits:
        typer.echo("no hits")
    for n, hit in enumerate(hits, 1):
        where = hit.doc_key + (f" p.{hit.page}" if hit.page else "")
        typer.echo(f"{n}. [{hit.score:.3f}] {hit.source}:{where}  {hit.title}")
        typer.echo("   " + hit.text[:300].replace("\n", " "))


def _skipped_now(engine: Any, name: str) -> list[dict[str, str]]:
    """The files a folder source skips now (types freshrag does not index), by a stat walk."""
    config = next((s for s in engine.settings.sources if s.name == name), None)
    if config is None or config.type != "folder":
        return []
    from connectors import SourceError
    from freshrag.config import ConfigError

    try:
        return [{"key": c.key, "reason": c.skipped or ""} for c in engine.source(name).scan({})
                if c.skipped is not None]
    except (ConfigError, SourceError, OSError):  # the folder is gone: status still answers
        return []


@app.command()
def status(config: ConfigOpt = None, home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """Documents, chunks, last sync and errors per source."""
    settings = settings_for(config, home)
    from freshrag.status import source_status

    engine = _engine(settings)
    try:
        rows = source_status(engine, freshness=True)
        for row in rows:
            row["skipped"] = _skipped_now(engine, row["source"])
    except Exception as exc:
        stopped(exc, writing=False)
    finally:
        engine.close()
    if as_json:  # the same names and units as the API's GET /status "sources"
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no sources synced yet")
    for row in rows:
        end = row["last_sync_end"]
        when = datetime.fromtimestamp(end, UTC).isoformat(timespec="seconds") if end else "never"
        lag = row["freshness"]["lag_ms"]
        typer.echo(f"{row['source']}: {row['documents']} documents, {row['chunks']} chunks, "
                   f"last sync {when}, lag {'unknown' if lag is None else f'{lag:.0f} ms'}, "
                   f"{len(row['errors'])} errors, {len(row['skipped'])} skipped")
        if "canary" in row:
            c = row["canary"]
            last = c["last_latency_s"]
            typer.echo(f"  canary: {c['detail']}"
                       + ("" if last is None else f"; last write-to-searchable {last:.2f} s"))
        for err in row["errors"][:10]:
            typer.echo(f"  error: {err['key']}: {err['error']}")
        for item in row["skipped"][:10]:
            typer.echo(f"  skipped: {item['key']}: {item['reason']}")
        for c in (row["last_report"] or {}).get("readers_unknown", [])[:10]:
            typer.echo(f"  readers unknown (last sync): {c['key']}: {c['reason']}")


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port.")] = 8000,
    config: ConfigOpt = None, home: HomeOpt = None,
) -> None:
    """Serve the search API (OpenAPI at /docs, a search page at /)."""
    settings = settings_for(config, home)
    check_clients(settings)
    import uvicorn

    from freshrag.api import create_app

    engine = _engine(settings)
    try:
        try:  # load the model before listening: a bad model.name is one line, exit 2
            engine.embedder.embed(["ready"])
        except Exception as exc:
            stopped(exc, writing=False)
        uvicorn.run(create_app(settings, engine=engine), host=host, port=port, log_level="info")
    finally:
        engine.close()


app.command()(verify)
app.add_typer(sql_app, name="sql", help="SQL sources: the Postgres notify trigger.")

from freshrag.cli_watch import register; register(app)  # noqa: E402, E702, I001
from freshrag.cli_mcp import register as _mcp; _mcp(app)  # noqa: E402, E702, I001


def _click_exceptions() -> Any:
    import importlib

    try:  # typer >= 0.2x carries its own copy of click
        return importlib.import_module("typer._click.exceptions")
    except ImportError:
        return importlib.import_module("click.exceptions")


LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%Y-%m-%d %H:%M:%S"


def main() -> None:
    # freshrag's own lines (the watcher's) have one handler of their own, with timestamps, so
    # they print once whatever Prefect later does to the root logger's handlers.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATEFMT))
    ours = logging.getLogger("freshrag")
    ours.addHandler(handler)
    ours.propagate = False
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    from freshrag.index import IndexMisconfigured

    cx = _click_exceptions()
    try:
        code = app(prog_name="freshrag", standalone_mode=False)
    except cx.UsageError as exc:  # a bad option, value or command: one line, exit 2
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help
            where = exc.ctx.command_path if exc.ctx is not None else "freshrag"
            message = " ".join(exc.format_message().split()).replace("Value error, ", "")
            typer.echo(f"{where}: {message}", err=True)
        code = 2
    except (getattr(cx, "Abort", typer.Abort), typer.Abort):
        code = 1
    except IndexMisconfigured as exc:  # any command (search, status, serve, ...): one line, 2
        typer.echo(f"freshrag: index configuration refused: {exc}", err=True)
        code = 2
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
