"""Per-source status: documents, chunks, last sync, lag and errors (CLI and API share it)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


def skipped_files(engine: Any, name: str) -> list[dict[str, str]]:
    """The files a folder source skips now (unsupported types), from a stat walk."""
    config = next((s for s in engine.settings.sources if s.name == name), None)
    if config is None or config.type != "folder":
        return []
    from connectors import SourceError
    from freshrag.config import ConfigError

    try:
        return [{"key": c.key, "reason": c.skipped} for c in engine.source(name).scan({})
                if c.skipped is not None]
    except (ConfigError, SourceError, OSError):  # a folder gone: status still answers
        return []


def source_status(engine: Any, with_skipped: bool = False) -> list[dict[str, Any]]:
    """One row per configured or previously synced source; `with_skipped` adds the files each
    folder source skips (a stat walk of the folder)."""
    stats = engine.index.stats()
    names = list(dict.fromkeys([s.name for s in engine.settings.sources]
                               + engine.ledger.sources()))
    now = time.time()
    rows = []
    for name in names:
        state = engine.ledger.source_state(name)
        st = stats.get(name)
        rows.append({
            "source": name,
            "documents": st.documents if st else 0,
            "chunks": st.chunks if st else 0,
            "last_sync_start": state.last_start,
            "last_sync_end": state.last_end,
            "last_sync_end_iso": _iso(state.last_end),
            "watermark": state.watermark,
            "lag_s": round(now - state.watermark, 3) if state.watermark else None,
            "last_report": state.last_report,
            "errors": engine.ledger.errors(name),
            **({"skipped": skipped_files(engine, name)} if with_skipped else {}),
        })
    return rows
