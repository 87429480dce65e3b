"""The watcher's idle release: after release_after without a change it releases the engine once;
polls that change nothing do not count as work; a change makes it release again later."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from flows.batching import Batch
from flows.watch import Watcher, WatchOptions
from freshrag.config import load_settings
from freshrag.model import SyncReport


class _Engine:
    """Only what the watcher's loop asks of an engine here."""

    def __init__(self) -> None:
        self.released = 0
        self.next = SyncReport()

    def release(self) -> list[str]:
        self.released += 1
        return ["stopped the parse worker"]

    def sync(self, source: str, keys: Any, observed_at: float) -> SyncReport:
        return self.next


def _watcher(config: Path, after: float, mode: str = "local") -> tuple[Watcher, _Engine]:
    engine = _Engine()
    watcher = Watcher(load_settings(config), ["docs"],
                      WatchOptions(mode=mode, record="off", release_after=after),
                      engine=engine)  # type: ignore[arg-type]
    return watcher, engine


def _batch() -> Batch:
    return Batch("docs", ["a.md"], time.monotonic(), time.time())


def test_released_once_after_the_quiet_spell_not_before(config: Path) -> None:
    watcher, engine = _watcher(config, 0.3)
    watcher._release_if_idle()
    assert engine.released == 0
    time.sleep(0.35)
    watcher._release_if_idle()
    watcher._release_if_idle()
    assert engine.released == 1 and watcher.released


def test_a_poll_that_changes_nothing_is_not_work_a_change_is(config: Path) -> None:
    watcher, engine = _watcher(config, 0.3)
    time.sleep(0.2)
    watcher._handle(_batch())  # nothing changed: the quiet spell goes on
    time.sleep(0.15)
    watcher._release_if_idle()
    assert engine.released == 1
    engine.next = SyncReport(added=1, embedded=1, written=1)
    watcher._handle(_batch())  # the engine works again: released anew after another spell
    assert not watcher.released
    watcher._release_if_idle()
    assert engine.released == 1
    time.sleep(0.35)
    watcher._release_if_idle()
    assert engine.released == 2


@pytest.mark.parametrize("after, mode", [(0.0, "local"), (0.1, "events")])
def test_never_released_when_off_or_in_events_mode(config: Path, after: float,
                                                    mode: str) -> None:
    watcher, engine = _watcher(config, after, mode)
    time.sleep(0.15)
    watcher._release_if_idle()
    assert engine.released == 0


def test_a_negative_release_after_is_refused() -> None:
    with pytest.raises(ValueError, match="release_after"):
        WatchOptions(release_after=-1)
