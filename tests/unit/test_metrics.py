"""freshrag.metrics: what a sync report, a watcher batch and a request add to the registry."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from freshrag import metrics
from freshrag.config import Settings, SourceConfig, load_settings
from freshrag.engine import Engine
from freshrag.model import SyncReport


def samples() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.render().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(name: str, default: float = 0.0, **labels: str) -> float:
    return samples().get((name, frozenset(labels.items())), default)


def test_a_report_counts_documents_chunks_errors_and_last_success() -> None:
    src = "unit-report"
    before = time.time()
    metrics.synced(src, SyncReport(added=2, updated=1, failed=1, embedded=5, reused=3,
                                   written=8, chunks_deleted=2))
    metrics.synced(src, SyncReport(added=1))
    assert value("freshrag_documents_total", source=src, outcome="added") == 3
    assert value("freshrag_documents_total", source=src, outcome="updated") == 1
    assert value("freshrag_documents_total", -1, source=src, outcome="deleted") == -1  # no series
    assert value("freshrag_chunks_total", source=src, kind="embedded") == 5
    assert value("freshrag_chunks_total", source=src, kind="reused") == 3
    assert value("freshrag_chunks_total", source=src, kind="written") == 8
    assert value("freshrag_chunks_total", source=src, kind="deleted") == 2
    assert value("freshrag_errors_total", source=src, kind="document") == 1
    assert value("freshrag_last_sync_success_timestamp_seconds", source=src) >= before
    metrics.sync_failed(src)
    assert value("freshrag_errors_total", source=src, kind="sync") == 1


def test_a_batch_is_observed_per_document_and_op_but_not_the_startup_reconcile() -> None:
    src = "unit-batch"
    first = time.monotonic()
    metrics.observe_batch(src, first, SyncReport(added=5), startup=True)
    assert value("freshrag_change_to_searchable_seconds_count", source=src, op="create") == 0
    metrics.observe_batch(src, first, SyncReport(added=3, updated=1, renamed=1, deleted=2,
                                                 touched=4), startup=False)
    name = "freshrag_change_to_searchable_seconds_count"
    assert value(name, source=src, op="create") == 3
    assert value(name, source=src, op="update") == 2  # a rename counts as an update
    assert value(name, source=src, op="delete") == 2
    assert value("freshrag_change_to_searchable_seconds_sum", source=src, op="create") >= 0


def test_pending_and_lag_are_read_at_scrape_time(tmp_path: Path) -> None:
    queue = {"a": 0}
    metrics.watch_pending(lambda: dict(queue))
    assert value("freshrag_pending_changes", -1, source="a") == 0
    queue["a"] = 7
    assert value("freshrag_pending_changes", source="a") == 7

    folder = tmp_path / "docs"
    folder.mkdir()
    settings: Settings = load_settings(config=None, home=tmp_path / "home")
    settings.sources = [SourceConfig(name="lagged", type="folder", path=str(folder))]
    engine = Engine(settings)
    try:
        metrics.watch_lag(lambda: engine, lambda: ["lagged"])
        # never synced and nothing pending: lag 0, checked now
        assert value("freshrag_lag_ms", -1, source="lagged") == 0
        (folder / "a.md").write_text("# A\n\ntext\n")
        # a file pending in a never-synced source: lag unknown, so no sample
        assert value("freshrag_lag_ms", -1, source="lagged") == -1
        metrics.unwatch_lag(engine)
        assert ("freshrag_lag_ms", frozenset({("source", "lagged")})) not in samples()
    finally:
        metrics.unwatch_lag(engine)
        engine.close()


def test_http_latency_is_labelled_by_route_template() -> None:
    app = FastAPI()

    @app.get("/things/{name}")
    async def thing(name: str) -> dict[str, str]:
        return {"name": name}

    app.add_middleware(metrics.HttpMetrics)
    name = "freshrag_http_request_duration_seconds_count"
    base = value(name, route="/things/{name}", method="GET", status="200")
    with TestClient(app) as client:
        for n in ("a", "b", "c"):
            assert client.get(f"/things/{n}").status_code == 200
        assert client.get("/nowhere/at/all").status_code == 404
    assert value(name, route="/things/{name}", method="GET", status="200") == base + 3
    assert value(name, route="other", method="GET", status="404") >= 1
    assert not any("/things/a" in dict(labels).get("route", "") for _, labels in samples())
