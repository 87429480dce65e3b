"""`freshrag watch` and `freshrag up`: the live watcher, and the watcher with the API server."""

from __future__ import annotations

import logging
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from freshrag.cli_common import (
    ConfigOpt,
    HomeOpt,
    _die,
    check_clients,
    check_model,
    settings_for,
)
from freshrag.config import ConfigError, Settings


class WatchMode(StrEnum):
    local = "local"
    events = "events"


class Record(StrEnum):
    auto = "auto"
    task = "task"
    event = "event"
    off = "off"


SourcesArg = Annotated[list[str] | None, typer.Argument(help="Sources to watch (default: all).")]
ModeOpt = Annotated[WatchMode, typer.Option(
    "--mode", help="local: apply batches in this process; events: emit freshrag.source.changed "
    "events for deployment triggers (workers run the sync flow).")]
RecordOpt = Annotated[Record, typer.Option(
    "--record", help="local mode: record each batch in Prefect as a task run of a watch flow "
    "run (task), as an event (event), or not at all (off); auto: task when a Prefect API is "
    "configured (PREFECT_API_URL or the Prefect profile), else off. task or event without a "
    "configured API start a temporary local Prefect server.")]
QuietOpt = Annotated[int, typer.Option("--quiet-ms", min=1, help="A batch closes after this "
                                       "long without a change.")]
MaxDelayOpt = Annotated[int, typer.Option("--max-delay-ms", min=1, help="A batch never waits "
                                          "longer than this after its first change.")]
PollOpt = Annotated[float, typer.Option("--poll", min=0.1, help="Seconds between polls of "
                                        "tables that set no poll_interval of their own.")]
ReleaseOpt = Annotated[float, typer.Option(
    "--release-after", min=0, help="Seconds without a change after which the parse worker "
    "stops and the model unloads, giving their memory back; the next change starts them again "
    "(~1 s). 0: keep them loaded.")]
FolderOpt = Annotated[Path | None, typer.Option("--folder", help="Watch this folder without a "
                                                "config file (source named after it).")]


def _watcher(settings: Settings, sources: list[str] | None, mode: WatchMode, record: Record,
             quiet_ms: int, max_delay_ms: int, poll: float, release_after: float) -> Any:
    from freshrag.hide import hide
    from freshrag.trim import arrow_uses_malloc

    # Arrow and LanceDB import pandas whenever it is installed (~35 MB of a watcher) and use
    # it only for DataFrames, which the watcher never makes; the parse worker, a process of its
    # own, still has it for CSV and spreadsheets. Not with torch: transformers probes and
    # imports optional packages on its own, and torch's ~500 MB dwarf the saving.
    if settings.model.backend != "torch":
        hide("pandas")
    arrow_uses_malloc()
    from flows.watch import Watcher, WatchOptions

    if mode is WatchMode.local:  # this process embeds: its model must load
        check_model(settings)
    logging.getLogger("freshrag.watch").setLevel(logging.INFO)
    try:
        options = WatchOptions(mode=mode.value, record=record.value, quiet=quiet_ms / 1000,
                               max_delay=max(max_delay_ms, quiet_ms) / 1000, poll=poll,
                               release_after=release_after)
        watcher = Watcher(settings, list(sources or []), options)
    except (ConfigError, ValueError) as exc:
        _die(str(exc))
    if not watcher.names:
        _die("no sources: pass --folder PATH or configure [[sources]] in freshrag.toml")
    _expose(watcher, local=mode is WatchMode.local)
    if mode is WatchMode.events:
        from prefect.settings import get_current_settings

        if not get_current_settings().api.url:
            _die("--mode events needs a Prefect server: set PREFECT_API_URL")
    return watcher


def _expose(watcher: Any, local: bool) -> None:
    """The watcher's figures read at scrape time: its queue, and (local mode) each lag."""
    from freshrag import metrics

    names = list(watcher.names)
    metrics.watch_pending(lambda: dict.fromkeys(names, 0) | watcher.coalescer.pending_keys())
    if local:
        # the watcher's own engine once run() has built it; none before (no lag yet)
        metrics.watch_lag(lambda: watcher._engine, lambda: names)
        metrics.watch_canary(watcher.settings, time.time())


def watch(sources: SourcesArg = None, mode: ModeOpt = WatchMode.local,
          record: RecordOpt = Record.auto, quiet_ms: QuietOpt = 100,
          max_delay_ms: MaxDelayOpt = 1000, poll: PollOpt = 5.0,
          release_after: ReleaseOpt = 300.0, folder: FolderOpt = None,
          metrics_port: Annotated[int | None, typer.Option(
              "--metrics-port", min=0, max=65535,
              help="Serve Prometheus metrics at http://HOST:PORT/metrics (off by default).")]
          = None,
          metrics_host: Annotated[str, typer.Option(
              "--metrics-host", help="Address for --metrics-port.")] = "127.0.0.1",
          config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Follow sources live: reconcile on start, then index each debounced batch of changes."""
    settings = settings_for(config, home, folder)
    if folder is not None and not sources:
        sources = [settings.sources[-1].name]
    watcher = _watcher(settings, sources, mode, record, quiet_ms, max_delay_ms, poll,
                       release_after)
    if metrics_port is not None:
        from freshrag import metrics

        try:
            metrics.serve(metrics_port, metrics_host)
        except OSError as exc:
            _die(f"--metrics-port {metrics_port}: cannot listen on {metrics_host}: {exc}")
        typer.echo(f"freshrag: metrics on http://{metrics_host}:{metrics_port}/metrics",
                   err=True)
    _run(watcher)
    _exit_now()


def _run(watcher: Any) -> None:
    """The watcher's loop; a configuration error found at start (a notify trigger that cannot
    be installed) is one line and exit 2."""
    try:
        watcher.run()
    except ConfigError as exc:
        _die(str(exc))


def _exit_now() -> None:
    """The watcher stopped cleanly: every batch is applied and committed, the record flushed
    as far as Prefect allowed. Exit without interpreter teardown, which waits without a bound
    for Prefect's senders and spends seconds collecting the model's objects."""
    import os
    import sys

    from flows.link import drain_prefect

    drain_prefect()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def up(sources: SourcesArg = None, host: Annotated[str, typer.Option(
           "--host", help="API address.")] = "127.0.0.1",
       port: Annotated[int, typer.Option("--port", min=0, max=65535, help="API port.")] = 8000,
       api: Annotated[bool, typer.Option("--api/--no-api", help="Serve the search API.")] = True,
       record: RecordOpt = Record.auto, quiet_ms: QuietOpt = 100,
       max_delay_ms: MaxDelayOpt = 1000, release_after: ReleaseOpt = 300.0,
       folder: FolderOpt = None, config: ConfigOpt = None, home: HomeOpt = None) -> None:
    """Everything a laptop needs: the local watcher, and the search API beside it. Batches are
    recorded in Prefect when an API is configured (see --record)."""
    settings = settings_for(config, home, folder)
    if api:
        check_clients(settings)
    if folder is not None and not sources:
        sources = [settings.sources[-1].name]
    watcher = _watcher(settings, sources, WatchMode.local, record, quiet_ms, max_delay_ms, 5.0,
                       release_after)
    server, thread = _start_api(settings, host, port) if api else (None, None)
    try:
        _run(watcher)
    finally:
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(10)
    _exit_now()


def _start_api(settings: Settings, host: str, port: int) -> tuple[Any, threading.Thread | None]:
    """uvicorn for freshrag.api in a thread of this process (the watcher keeps the main thread)."""
    try:
        import uvicorn

        from freshrag.api import create_app
    except ImportError:
        typer.echo("freshrag: the API is not available; running the watcher only", err=True)
        return None, None
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=host, port=port,
                                           log_level="info"))
    thread = threading.Thread(target=server.run, name="freshrag-api", daemon=True)
    thread.start()
    typer.echo(f"freshrag: search API on http://{host}:{port} (docs at /docs)", err=True)
    return server, thread


def register(app: typer.Typer) -> None:
    """Mount `watch` and `up` on the main CLI."""
    app.command()(watch)
    app.command()(up)
