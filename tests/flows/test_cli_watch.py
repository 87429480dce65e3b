"""`freshrag watch` as a process: reconcile on start, follow changes, exit cleanly on a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from freshrag.config import load_settings
from freshrag.ledger import Ledger
from tests.flows.conftest import ROOT
from tests.flows.test_watch import wait_until


def _keys(home: Path) -> set[str]:
    ledger = Ledger(load_settings(home=home).ledger())
    try:
        return set(ledger.fingerprints("docs"))
    except Exception:  # noqa: BLE001 - the watcher has not created its tables yet
        return set()
    finally:
        ledger.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_watch_command_follows_and_stops(tmp_path: Path, folder: Path,
                                         sig: signal.Signals) -> None:
    (folder / "a.md").write_text("# A\n\nBefore the watcher started.\n")
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FRESHRAG_CONFIG": ""}
    log = (tmp_path / "watch.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "freshrag.cli", "watch", "--folder", str(folder),
         "--home", str(home), "--record", "off", "--quiet-ms", "50"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _keys(home) == {"a.md"}, "start-up reconcile")
        (folder / "b.md").write_text("# B\n\nWritten while watching.\n")
        wait_until(lambda: _keys(home) == {"a.md", "b.md"}, "change followed")
        proc.send_signal(sig)
        assert proc.wait(60) == 0, (tmp_path / "watch.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert "finishing the batch in hand" in (tmp_path / "watch.log").read_text()


def test_sigterm_inside_watch_flow_run(prefect_harness: None, tmp_path: Path,
                                       folder: Path) -> None:
    """With --record task the loop runs inside a flow run, whose SIGTERM bridge would abort the
    batch in hand; the watcher takes SIGTERM back and the flow run ends Completed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.settings import get_current_settings

    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FRESHRAG_CONFIG": "",
           "PREFECT_API_URL": str(get_current_settings().api.url)}
    (folder / "a.md").write_text("# A\n\nRecorded in Prefect.\n")
    log = (tmp_path / "watch.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "freshrag.cli", "watch", "--folder", str(folder),
         "--home", str(home), "--record", "task"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _keys(home) == {"a.md"}, "start-up reconcile")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, (tmp_path / "watch.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["freshrag-watch"])))
    mine = [r for r in runs if r.name == "watch docs"]
    assert mine and mine[-1].state is not None and mine[-1].state.is_completed()
