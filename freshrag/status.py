"""Per-source status: documents, chunks, last sync, freshness and errors (CLI and API share it)."""

from __future__ import annotations

from typing import Any


def source_status(engine: Any, freshness: bool = False) -> list[dict[str, Any]]:
    """One row per configured or previously synced source. Times are unix seconds. With
    `freshness`, each row has the same `freshness` object the API's /status gives (lag_ms)."""
    stats = engine.index.stats()
    configured = {s.name for s in engine.settings.sources}
    names = list(dict.fromkeys([s.name for s in engine.settings.sources]
                               + engine.ledger.sources()))
    rows = []
    for name in names:
        state = engine.ledger.source_state(name)
        st = stats.get(name)
        row: dict[str, Any] = {
            "source": name,
            "configured": name in configured,
            "documents": st.documents if st else 0,
            "chunks": st.chunks if st else 0,
            "last_sync_start": state.last_start,
            "last_sync_end": state.last_end,
            "last_report": state.last_report,
        }
        if freshness:
            from freshrag.api.freshness import measure

            row["freshness"] = measure(engine, name).model().model_dump()
        row["errors"] = engine.ledger.errors(name)
        rows.append(row)
    return rows
