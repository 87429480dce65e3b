"""The watcher's record in Prefect: task runs of a watch flow run (local), events (events mode)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from flows.watch import CHANGED, Watcher, WatchOptions
from freshrag.config import load_settings
from tests.flows.test_watch import wait_until


def _start(config: Path, options: WatchOptions) -> tuple[Watcher, threading.Thread]:
    watcher = Watcher(load_settings(config), ["docs"], options)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    return watcher, thread


def _stop(watcher: Watcher, thread: threading.Thread) -> None:
    watcher.stop()
    thread.join(60)
    assert not thread.is_alive()


def test_local_mode_records_task_runs(prefect_harness: None, folder: Path, config: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    watcher, thread = _start(config, WatchOptions(record="task", quiet=0.05))
    try:
        wait_until(watcher.ready.is_set, "start-up reconcile")
        (folder / "n.md").write_text("# Note\n\nThe narwhal dives.\n")
        wait_until(lambda: "n.md" in watcher.engine.ledger.fingerprints("docs"), "indexed")
    finally:
        _stop(watcher, thread)
        watcher.engine.close()
    flows = FlowFilter(name=FlowFilterName(any_=["freshrag-watch"]))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=flows)
        assert runs and all(r.state and r.state.is_completed() for r in runs)

        def names() -> set[str]:
            tasks = client.read_task_runs(flow_filter=flows)
            return {t.name for t in tasks if t.state and t.state.is_completed()}
        wait_until(lambda: {"docs: rescan", "docs: 1 key(s)"} <= names(), "task runs recorded")


def _listen(source: str) -> None:
    """An automation on the source's resource, standing in for a deployment's trigger."""
    from prefect.automations import Automation
    from prefect.events.actions import DoNothing
    from prefect.events.schemas.automations import EventTrigger, Posture

    Automation(name=f"test {source} changed", trigger=EventTrigger(
        match={"prefect.resource.id": f"freshrag.source.{source}"}, expect={CHANGED},
        posture=Posture.Reactive, threshold=1), actions=[DoNothing()]).create()


def test_events_mode_emits_changed(prefect_harness: None, folder: Path, config: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    _listen("docs")  # the outbox holds changes no deployment trigger listens for
    watcher, thread = _start(config, WatchOptions(mode="events", quiet=0.05))
    try:
        wait_until(watcher.ready.is_set, "start-up announce")
        (folder / "e.md").write_text("# Event\n\nThe echidna waddles.\n")
        wait_until(lambda: watcher.batches >= 2, "change announced")
    finally:
        _stop(watcher, thread)  # drains the events worker
    flt = EventFilter(event=EventNameFilter(name=[CHANGED]))

    def payloads() -> list[Any]:
        with get_client(sync_client=True) as client:
            events = client.read_events(flt, limit=50).events
        return [e.payload.get("keys") for e in events if e.resource.id == "freshrag.source.docs"]
    wait_until(lambda: None in payloads() and ["e.md"] in payloads(), "events stored")
    assert watcher._engine is None  # events mode never loads the engine or the model
