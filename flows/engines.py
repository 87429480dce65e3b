"""One Engine per (config, home) per process, so a model is loaded once per worker or watcher."""

from __future__ import annotations

import threading
from pathlib import Path

from freshrag.config import Settings, load_settings
from freshrag.engine import Engine

_lock = threading.Lock()
_engines: dict[tuple[str, str], tuple[Engine, threading.Lock]] = {}


def settings_of(config: str | None = None, home: str | None = None) -> Settings:
    return load_settings(Path(config) if config else None, Path(home) if home else None)


def engine_for(config: str | None = None, home: str | None = None
               ) -> tuple[Engine, threading.Lock]:
    """The process's engine for these settings, and the lock that serialises its use."""
    key = (config or "", home or "")
    with _lock:
        if key not in _engines:
            _engines[key] = (Engine(settings_of(config, home)), threading.Lock())
        return _engines[key]


def adopt(engine: Engine, config: str | None = None, home: str | None = None) -> None:
    """Make an engine built elsewhere (the watcher's) the one flows in this process use."""
    with _lock:
        _engines[(config or "", home or "")] = (engine, threading.Lock())


def close_all() -> None:
    with _lock:
        for engine, lock in _engines.values():
            with lock:
                engine.close()
        _engines.clear()
