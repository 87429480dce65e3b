"""Units of the watcher's Prefect side: what gets recorded, the probe's backoff, the outbox."""

from __future__ import annotations

import logging

import pytest

from flows.batching import Batch
from flows.link import Link
from flows.outbox import Outbox
from flows.record import Recorder
from freshrag.model import SyncReport


def _batch(source: str = "docs", keys: list[str] | None = None) -> Batch:
    return Batch(source, keys, 0.0, 1.0)


def test_only_batches_that_changed_something_are_recorded() -> None:
    rec = Recorder("task", "docs", ["docs"])
    assert rec.submit(_batch(), SyncReport(unchanged=3), startup=True)  # start-up: always
    assert not rec.submit(_batch(), SyncReport(unchanged=3))  # a no-op poll
    assert not rec.submit(_batch(keys=["a.md"]), SyncReport(touched=1))  # fingerprint only
    assert rec.submit(_batch(keys=["a.md"]), SyncReport(updated=1, written=1))
    assert rec.submit(_batch(keys=["b.md"]), SyncReport(failed=1))
    assert rec.submit(_batch(keys=["c.md"]), None, failure="index unavailable")
    assert rec.pending() == 4
    counts = rec._counts["docs"]
    assert (counts.batches, counts.recorded, counts.rescans) == (6, 4, 2)


def test_full_queue_drops_oldest_and_counts_it() -> None:
    rec = Recorder("event", "docs", ["docs"], capacity=2)
    for n in range(5):
        rec.submit(_batch(keys=[f"{n}.md"]), SyncReport(added=1))
    assert rec.pending() == 2 and rec.dropped == 3
    assert [e.payload["keys"] for e in rec._queue] == [1, 1]


def test_link_warns_once_per_outage_and_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    answers = ["refused", "refused", "refused", None]
    link = Link("recording", clock=lambda: now[0], probe_fn=lambda url: answers.pop(0))
    with caplog.at_level(logging.WARNING, "freshrag.watch"):
        assert not link.ready()
        assert link.wait_s() == 1.0 and not link.ready()  # not due: no probe
        now[0] = 1.0
        assert not link.ready() and link.wait_s() == 2.0
        now[0] = 3.0
        assert not link.ready() and link.wait_s() == 4.0
        now[0] = 7.0
        assert link.ready()
        link.ok()
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in w for w in warnings) == 1
    assert sum("resumed" in w for w in warnings) == 1


def test_outbox_merges_and_collapses_to_rescan(caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(max_keys=3)  # never started: nothing is sent
    box.add(_batch(keys=["a", "b"]))
    box.add(_batch(keys=["b", "c"]))
    assert box._held["docs"] == dict.fromkeys(["a", "b", "c"])
    with caplog.at_level(logging.WARNING, "freshrag.watch"):
        box.add(_batch(keys=["d"]))
    assert box._held["docs"] is None  # one rescan covers every held key: none lost
    assert "holding one rescan" in caplog.text
    box.add(_batch(keys=["e"]))
    assert box._held["docs"] is None
    box.add(_batch("crm", None))
    assert box.held() == 2


def test_heartbeat_carries_the_counts_since_the_last() -> None:
    rec = Recorder("event", "docs", ["docs"], heartbeat_s=0.0)
    rec.submit(_batch(), SyncReport(unchanged=2))
    rec.submit(_batch(keys=["a.md"]), SyncReport(updated=1))
    rec._heartbeats()
    beat = [e for e in rec._queue if e.heartbeat][0]
    assert beat.label == "heartbeat"
    assert (beat.payload["batches"], beat.payload["recorded"], beat.payload["rescans"]) == (2, 1, 1)
    assert "1 changed nothing" in beat.summary
    assert rec._counts["docs"].batches == 0  # counting starts again
