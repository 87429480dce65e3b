"""The backfill command's own process: the Prefect API it reports to, Ctrl-C, its log."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EPHEMERAL_START_S = 180  # a loaded machine starts Prefect's temporary server slowly


@contextlib.contextmanager
def prefect_api(log_path: Path) -> Iterator[str]:
    """The Prefect API the flow and every worker report to: PREFECT_API_URL, else one quiet
    temporary server started here (Prefect's ephemeral mode would start one per worker process
    and print its server's tracebacks into the user's terminal), its output in `log_path`,
    which the worker processes inherit."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.prefect_api import TemporaryServer

    url = PREFECT_API_URL.value()
    if url:
        yield url
        return
    server = TemporaryServer(log_path)
    url = server.start()
    try:
        failed = server.wait_ready(EPHEMERAL_START_S)
        if failed is not None:
            from flows.backfill import BackfillError

            raise BackfillError(failed)
        os.environ["PREFECT_API_URL"] = url
        with temporary_settings({PREFECT_API_URL: url}):
            yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        _flush_to(url)
        server.stop()


def _flush_to(url: str) -> None:
    """Send the logs and events still queued for the server at `url` before it stops: queued
    ones would be retried at exit for over a minute against a server that is gone."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: url}):
        for service in (APILogWorker, EventsWorker):
            with contextlib.suppress(Exception):
                service.drain_all(timeout=15)


def _children(pid: int) -> list[int]:
    """Every living descendant of `pid` (Linux /proc), deepest first."""
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            kids.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(
                int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out[::-1]


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C (or SIGTERM) during a backfill: stop every process it started (the workers,
    their parse children, Prefect's temporary server) and exit 130. Raising through Prefect's
    and Dask's threads instead can leave the command waiting on them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        print("freshrag: backfill interrupted; stopping its workers (the ranges written are "
              "kept, the next sync does the rest)", file=sys.stderr, flush=True)
        procs = _children(os.getpid())
        for sig, pause in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
            for pid in procs:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists()
                                                      for p in _children(os.getpid())):
                time.sleep(0.1)
            for pid in procs:  # reap our own children
                with contextlib.suppress(OSError):
                    os.waitpid(pid, os.WNOHANG)
        os._exit(130)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _OneLine(logging.Filter):
    def __init__(self, types: tuple[type[BaseException], ...]):
        super().__init__()
        self.types = types

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.types):
            record.exc_info, record.exc_text = None, None
        return True


@contextlib.contextmanager
def one_line(*types: type[BaseException]) -> Iterator[None]:
    """Prefect logs a flow's exception with its traceback: these, whose message says it all,
    are logged as their one line."""
    logger, only = logging.getLogger("prefect.flow_runs"), _OneLine(types)
    logger.addFilter(only)
    try:
        yield
    finally:
        logger.removeFilter(only)
