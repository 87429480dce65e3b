"""Per-source status: documents, chunks, last sync, lag and errors (CLI and API share it)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


def source_status(engine: Any) -> list[dict[str, Any]]:
    """One row per configured or previously synced source."""
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
        })
    return rows
