"""The lock's lanes: a live change waiting for a source goes before any backfill range."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from freshrag.ledger import Ledger
from freshrag.lock import BACKFILL, RUN_MARK, SourceBusy, backfill_running, held, lane, live_waiting
from tests.e2e.userpath import wait_until


def test_a_live_waiter_takes_the_lock_before_a_backfill_range(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    order: list[str] = []

    def take(who: str, in_lane: str | None) -> None:
        def body() -> None:
            with held(ledger, "docs", wait_s=30, poll_s=0.02):
                order.append(who)
        if in_lane is None:
            body()
        else:
            with lane(in_lane):
                body()

    with held(ledger, "docs", poll_s=0.02):  # a range writing
        ranged = threading.Thread(target=take, args=("range", BACKFILL))
        ranged.start()  # waiting first, in the backfill lane: leaves no mark
        assert not live_waiting(ledger, "docs")
        live = threading.Thread(target=take, args=("live", None))
        live.start()
        wait_until(lambda: live_waiting(ledger, "docs"), "the live waiter's mark", 10)
    live.join(30)
    ranged.join(30)
    assert order == ["live", "range"]
    assert not live_waiting(ledger, "docs")  # the mark went with its waiter
    ledger.close()


def test_one_backfill_per_source_is_seen_and_a_second_refused(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert backfill_running(ledger, "docs") is None
    with held(ledger, f"docs{RUN_MARK}", wait_s=0):
        assert backfill_running(ledger, "docs") is not None
        assert backfill_running(ledger, "other") is None
        with pytest.raises(SourceBusy):
            held(ledger, f"docs{RUN_MARK}", wait_s=0).__enter__()
        with held(ledger, "docs", wait_s=0):  # the source's writer lock stays free
            pass
    assert backfill_running(ledger, "docs") is None
    ledger.close()
