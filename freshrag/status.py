"""Per-source status: documents, chunks, last sync, freshness and errors (CLI and API share it)."""

from __future__ import annotations

import time
from typing import Any


def source_status(engine: Any, freshness: bool = False,
                  since: float | None = None) -> list[dict[str, Any]]:
    """One row per configured or previously synced source. Times are unix seconds. With
    `freshness`, each row has the same `freshness` object the API's /status gives (lag_ms).
    A source with `canary = true` has a `canary` object (late or not; `since`: when the
    caller started, the clock of a canary no watcher has run); its document is not counted."""
    stats = engine.index.stats()
    configured = {s.name for s in engine.settings.sources}
    names = list(dict.fromkeys([s.name for s in engine.settings.sources]
                               + engine.ledger.sources()))
    from freshrag.canary import report

    canaries = report(engine.settings, since=since if since is not None else time.time())
    rows = []
    for name in names:
        state = engine.ledger.source_state(name)
        st = stats.get(name)
        own = _canary_doc(engine, name)  # counted apart: it is freshrag's, not the user's
        row: dict[str, Any] = {
            "source": name,
            "configured": name in configured,
            "documents": max(0, (st.documents if st else 0) - (1 if own is not None else 0)),
            "chunks": max(0, (st.chunks if st else 0) - (own or 0)),
            "last_sync_start": state.last_start,
            "last_sync_end": state.last_end,
            "last_report": state.last_report,
        }
        if freshness:
            from freshrag.api.freshness import measure

            row["freshness"] = measure(engine, name).model().model_dump()
        row["errors"] = engine.ledger.errors(name)
        if name in canaries:
            row["canary"] = {**canaries[name], "indexed": own is not None}
        rows.append(row)
    return rows


def _canary_doc(engine: Any, name: str) -> int | None:
    """Chunks of the source's canary document as the ledger knows it (None: not indexed)."""
    from freshrag.canary import CANARY_KEY

    doc = engine.ledger.get(name, CANARY_KEY)
    return None if doc is None else len(doc.chunk_hashes)
