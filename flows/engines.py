"""One Engine per (config, home) per process, so a model is loaded once per worker or watcher."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from freshrag.config import ConfigError, Settings, load_settings
from freshrag.engine import Engine

_lock = threading.Lock()
_engines: dict[tuple[str, str], tuple[Engine, threading.Lock]] = {}
_built: dict[tuple[str, str], float] = {}  # when each engine was built (time.time())
_uses: dict[tuple[str, str], int] = {}  # flow runs that asked for each engine


def _key(config: str | None, home: str | None) -> tuple[str, str]:
    for name, value in (("config", config), ("home", home)):
        if value and "{{" in value:  # a prefect.yaml placeholder no one filled in at deploy time
            raise ConfigError(f"deployment parameter {name} is {value!r}: set FRESHRAG_CONFIG "
                              "(and FRESHRAG_HOME, empty for the config's) when running "
                              "`prefect deploy`")
    return (config or "", home or "")


def settings_of(config: str | None = None, home: str | None = None) -> Settings:
    return load_settings(Path(config) if config else None, Path(home) if home else None)


def engine_for(config: str | None = None, home: str | None = None
               ) -> tuple[Engine, threading.Lock]:
    """The process's engine for these settings, and the lock that serialises its use."""
    key = _key(config, home)
    with _lock:
        if key not in _engines:
            _engines[key] = (Engine(settings_of(config, home)), threading.Lock())
            _built[key] = time.time()
        return _engines[key]


def checkout(config: str | None = None, home: str | None = None) -> str:
    """Count a flow run's use of the engine and say whether it was warm (built and warmed by an
    earlier run or by the serving process) or is built now, for the run's log."""
    key = _key(config, home)
    with _lock:
        _uses[key] = _uses.get(key, 0) + 1
        uses, pair, built = _uses[key], _engines.get(key), _built.get(key, time.time())
    if pair is None:
        return "engine: cold, built for this run (loads the model)"
    loaded = bool(getattr(pair[0].embedder, "loaded", False))
    return (f"engine: {'warm' if loaded else 'built, model not loaded yet'}, built "
            f"{time.time() - built:.0f} s ago; flow run {uses} this process has served")


def adopt(engine: Engine, config: str | None = None, home: str | None = None) -> None:
    """Make an engine built elsewhere (the watcher's) the one flows in this process use."""
    key = _key(config, home)
    with _lock:
        _engines[key] = (engine, threading.Lock())
        _built[key] = time.time()


def close_all() -> None:
    with _lock:
        for engine, lock in _engines.values():
            with lock:
                engine.close()
        _engines.clear()
        _built.clear()
        _uses.clear()
