"""Freshness you can rely on: lag as defined in docs/api.md, and never old text with a fresh
watermark when a request asks for `max_lag_ms` or `min_watermark`."""

from __future__ import annotations

import os
import random
import re
import threading
import time
from pathlib import Path
from typing import Any

from freshrag.api.freshness import measure


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # what editors do: readers see the old or the new file, never half


def test_lag_is_zero_when_nothing_is_pending_however_old_the_sync(make_client: Any) -> None:
    client, engine, _ = make_client()
    engine.ledger.set_source_state("docs", watermark=time.time() - 3600)  # synced an hour ago
    fresh = client.post("/search", json={"query": "travel"}).json()["freshness"]["docs"]
    assert fresh["lag_ms"] == 0 and fresh["pending"] == 0
    assert fresh["watermark"] >= time.time() - 5  # everything up to the check is searchable


def test_pending_lag_counts_from_the_last_sync_not_the_mtime(make_client: Any) -> None:
    _, engine, folder = make_client()
    two_hours_ago = time.time() - 7200
    for path in folder.rglob("*.*"):
        os.utime(path, (two_hours_ago, two_hours_ago))
    assert engine.sync("docs").touched == 4  # the ledger now holds the old mtimes
    hour_ago = time.time() - 3600
    engine.ledger.set_source_state("docs", watermark=hour_ago)
    assert measure(engine, "docs").lag_ms == 0
    path = folder / "notes.txt"
    path.write_text("The cafeteria now closes at one.\n")
    # A fresh mtime does not date the first unindexed change; the last sync does.
    check = measure(engine, "docs")
    assert check.pending == 1 and check.method == "scan"
    assert check.watermark == hour_ago and 3_600_000 <= check.lag_ms < 3_700_000
    path.unlink()
    (folder / "new.md").write_text("# New\n\nA brand new page.\n")
    check = measure(engine, "docs")
    assert check.pending == 2 and check.watermark == hour_ago
    engine.sync("docs")
    check = measure(engine, "docs")
    assert check.pending == 0 and check.lag_ms == 0


def test_never_synced_source_has_unknown_lag(make_client: Any) -> None:
    _, engine, _ = make_client(sync=False)
    check = measure(engine, "docs")
    assert check.pending == 4 and check.lag_ms is None and check.watermark is None


def test_a_file_that_fails_to_index_is_failed_not_pending(make_client: Any) -> None:
    client, engine, folder = make_client()
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    report = engine.sync("docs")
    assert report.failed == 1
    check = measure(engine, "docs")
    assert check.pending == 0 and check.failed == 1 and check.lag_ms == 0
    row = client.get("/status").json()["sources"][0]
    assert row["errors"][0]["key"] == "broken.pdf" and row["freshness"]["failed"] == 1
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 still broken, but changed since")
    assert measure(engine, "docs").pending == 1  # changed after the failure: pending again


def test_stale_answers_503_with_the_lag_after_a_bounded_wait(make_client: Any) -> None:
    client, _, folder = make_client(max_wait_ms=300, poll_ms=50)
    _write_atomic(folder / "notes.txt", "The cafeteria now serves sushi on Fridays.\n")
    started = time.monotonic()
    res = client.post("/search", json={"query": "cafeteria", "max_lag_ms": 0})
    waited = time.monotonic() - started
    assert res.status_code == 503, res.text
    body = res.json()
    assert body["freshness"]["docs"]["pending"] == 1 and body["freshness"]["docs"]["lag_ms"] > 0
    assert "docs lags" in body["detail"] and res.headers["retry-after"] == "1"
    assert body["waited_ms"] >= 300 and waited < 5
    ok = client.post("/search", json={"query": "cafeteria", "max_lag_ms": 3_600_000})
    assert ok.status_code == 200  # an hour of lag is acceptable to this caller
    assert ok.json()["freshness"]["docs"]["pending"] == 1  # and it is told about the pending one


def test_waits_for_a_sync_then_answers_with_the_change(make_client: Any) -> None:
    client, engine, folder = make_client(max_wait_ms=20_000, poll_ms=20)
    _write_atomic(folder / "notes.txt", "The cafeteria now serves sushi on Fridays.\n")
    changed_at = time.time()
    syncer = threading.Timer(0.3, engine.sync, args=("docs",))
    syncer.start()
    res = client.post("/search", json={"query": "cafeteria sushi", "max_lag_ms": 0, "k": 1})
    syncer.join()
    assert res.status_code == 200, res.text
    body = res.json()
    assert "sushi" in body["hits"][0]["text"]
    assert body["freshness"]["docs"]["watermark"] >= changed_at
    res = client.post("/search", json={"query": "cafeteria", "min_watermark": changed_at})
    assert res.status_code == 200 and res.json()["freshness"]["docs"]["watermark"] >= changed_at
    future = client.post("/search", json={"query": "x", "min_watermark": time.time() + 3600})
    assert future.status_code == 422 and "min_watermark" in future.json()["detail"]
    soon = client.post("/search", json={"query": "x", "min_watermark": time.time() + 0.3})
    assert soon.status_code == 200 and soon.json()["freshness"]["docs"]["watermark"] >= 0


VERSION = re.compile(r"release checklist version (\d+)")


def test_never_old_text_with_a_fresh_watermark_under_churn(make_client: Any) -> None:
    """A writer keeps changing one file and syncing at random moments; every 200 answer to a
    max_lag_ms=0 (or min_watermark) request holds a version at least as new as the one on disk
    when the request was sent."""
    client, engine, folder = make_client(max_wait_ms=10_000, poll_ms=10, freshness_ttl_ms=0)
    path = folder / "checklist.md"
    written = [0]
    _write_atomic(path, "# Checklist\n\nThe release checklist version 0 is current.\n")
    engine.sync("docs")
    stop = threading.Event()
    rng = random.Random(6)

    def writer() -> None:
        n = 0
        while not stop.is_set() and n < 40:
            n += 1
            _write_atomic(path, f"# Checklist\n\nThe release checklist version {n} is current.\n")
            written[0] = n
            time.sleep(rng.uniform(0, 0.05))
            if rng.random() < 0.7:
                engine.sync("docs")
        engine.sync("docs")

    thread = threading.Thread(target=writer)
    thread.start()
    answered = stale = 0
    try:
        while thread.is_alive():
            before = written[0]
            demand = ({"max_lag_ms": 0} if answered % 2 else {"min_watermark": time.time()})
            res = client.post("/search", json={"query": "release checklist version", "k": 1,
                                               "mode": "keyword", **demand})
            if res.status_code == 503:
                stale += 1
                continue
            assert res.status_code == 200, res.text
            found = VERSION.search(res.json()["hits"][0]["text"])
            assert found and int(found.group(1)) >= before, (before, res.json())
            answered += 1
    finally:
        stop.set()
        thread.join()
    assert answered >= 3, (answered, stale)
