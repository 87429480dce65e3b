"""Canaries: which document is one, where its state is shared, and when it is late."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

CANARY_DIR = ".freshrag-canary"  # in the folder source's root: owned by freshrag
CANARY_KEY = f"{CANARY_DIR}/canary.txt"
SLACK_S = 30.0  # default lateness: two intervals and this much


def is_canary(key: str) -> bool:
    return key == CANARY_DIR or key.startswith(CANARY_DIR + "/")


def asked_for(filters: Any) -> bool:
    """A search shows canary documents only when its doc_key_prefix names their folder."""
    prefix = getattr(filters, "doc_key_prefix", None) or ""
    return prefix.startswith(CANARY_DIR)


def enabled(settings: Any) -> list[Any]:
    """The `[[sources]]` entries with `canary = true`."""
    return [s for s in settings.sources if getattr(s, "canary", False)]


def late_after(config: Any) -> float:
    """Seconds without a success after which the source's canary is late."""
    given = getattr(config, "canary_late_after", None)
    return float(given) if given else 2 * float(config.canary_interval) + SLACK_S


def state_path(home: Path, source: str) -> Path:
    return Path(home) / "canary" / f"{source}.json"


def write_state(home: Path, source: str, state: dict[str, Any]) -> None:
    """The watcher's canary state, replaced atomically (serve and status read it)."""
    path = state_path(home, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, path)


def read_state(home: Path, source: str) -> dict[str, Any] | None:
    try:
        data = json.loads(state_path(home, source).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def verdict(config: Any, state: dict[str, Any] | None, now: float, since: float) -> dict[str, Any]:
    """One source's canary as status, /ready and /metrics show it. Without any state (no
    watcher ever ran it) the clock starts at `since` (the reader's own start)."""
    interval, limit = float(config.canary_interval), late_after(config)
    state = state or {}
    success = state.get("last_success")
    known = [t for t in (success, state.get("started")) if t is not None]
    baseline = max(known) if known else since
    late = now - baseline > limit
    if success is None:
        what = "no canary found yet" + ("" if state else " (no watcher has run it)")
    else:
        what = f"last found {now - success:.0f} s ago"
    stopped = state.get("stopped")
    if stopped is not None and stopped >= baseline:
        what += f"; the watcher stopped {now - stopped:.0f} s ago"
    detail = (f"late: {what} (written every {interval:g} s, late after {limit:g} s)" if late
              else what)
    return {"enabled": True, "late": late, "interval_s": interval, "late_after_s": limit,
            "last_write": state.get("last_write"), "last_success": success,
            "last_latency_s": state.get("last_latency_s"), "missed": state.get("missed", 0),
            "detail": detail}


def report(settings: Any, since: float, now: float | None = None) -> dict[str, dict[str, Any]]:
    """Every enabled canary's verdict, by source name."""
    now = time.time() if now is None else now
    return {c.name: verdict(c, read_state(settings.home, c.name), now, since)
            for c in enabled(settings)}
