"""Scale-out on a real Prefect server: prefect.yaml deployed to a work pool, two process workers,
a burst of events for two sources → every change indexed, never two runs of a source at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from freshrag.config import load_settings
from freshrag.ledger import Ledger
from tests.flows.conftest import ROOT, write_config
from tests.flows.prefect_server import prefect_server
from tests.flows.test_e2e_server import _client_call
from tests.flows.test_watch import files_in, wait_until

pytestmark = pytest.mark.slow
SOURCES = ("docs", "policies")  # the sources deployments/prefect.yaml declares

EMIT = """
import json, sys
from prefect.events import emit_event
for source, keys in json.loads(sys.argv[1]):
    emit_event("freshrag.source.changed",
               resource={"prefect.resource.id": f"freshrag.source.{source}"},
               payload={"keys": keys, "observed_at": None})
"""


def _prefect(env: dict[str, str], *args: str) -> None:
    prefect = str(Path(sys.executable).parent / "prefect")
    out = subprocess.run([prefect, "--no-prompt", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def _keys(config: Path, source: str) -> set[str]:
    ledger = Ledger(load_settings(config).ledger())
    try:
        return set(ledger.fingerprints(source))
    except Exception:  # noqa: BLE001 - no sync has created the tables yet
        return set()
    finally:
        ledger.close()


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, dict[str, Path]]]:
    folders = {s: tmp_path / s for s in SOURCES}
    for f in folders.values():
        f.mkdir()
    config = write_config(tmp_path, folders)
    with prefect_server(tmp_path) as (_, env), ExitStack() as stack:
        env = {**env, "PYTHONPATH": str(ROOT), "FRESHRAG_ROOT": str(ROOT),
               "FRESHRAG_CONFIG": str(config)}
        _prefect(env, "work-pool", "create", "freshrag", "--type", "process")
        _prefect({**env, "FRESHRAG_HOME": str(tmp_path / "home")}, "deploy", "--all",
                 "--prefect-file", "deployments/prefect.yaml")
        for n in range(2):
            log = stack.enter_context((tmp_path / f"worker{n}.log").open("w"))
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool",
                 "freshrag", "--name", f"w{n}", "--limit", "2"],
                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
            stack.callback(_stop, proc)
        yield env, config, folders


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _runs(env: dict[str, str]) -> list[Any]:
    return list(_client_call(env, lambda c: c.read_flow_runs()))


def test_two_workers_burst_two_sources(cluster: tuple[dict[str, str], Path, dict[str, Path]]
                                       ) -> None:
    env, config, folders = cluster
    events: list[tuple[str, list[str]]] = []
    for source, folder in folders.items():
        for n in range(12):
            name = f"{source}-{n}.md"
            (folder / name).write_text(f"# {source} {n}\n\nNote {n} of {source}, code z{n}q.\n")
            if n % 3 == 2:  # an event per three files
                events.append((source, [f"{source}-{k}.md" for k in range(n - 2, n + 1)]))
    subprocess.run([sys.executable, "-c", EMIT, json.dumps(events)], env=env, check=True,
                   timeout=120)
    for source, folder in folders.items():
        wait_until(lambda s=source, f=folder: _keys(config, s) == files_in(f),
                   f"{source} indexed", limit=600)

    def settled() -> bool:
        runs = [r for r in _runs(env) if r.parameters.get("keys")]
        return len(runs) >= len(events) and all(r.state and r.state.is_final() for r in runs)
    wait_until(settled, "every triggered run finished", limit=600)
    runs = _runs(env)
    assert all(r.state.is_completed() for r in runs if r.state and r.state.is_final())
    logs = [(config.parent / f"worker{n}.log").read_text() for n in range(2)]
    print("runs:", len(runs), "submitted per worker:",
          [log.count("Submitting flow run") for log in logs])
    for source in SOURCES:
        spans = sorted((r.start_time, r.end_time) for r in runs
                       if r.parameters.get("source") == source and r.start_time and r.end_time)
        assert spans, f"no runs of {source}"
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end, f"two runs of {source} overlapped"


def test_worker_killed_mid_run_converges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    """SIGKILL a worker and its flow-run process mid-run: the dead run's per-source slots expire
    (leases; ~5 min by default), the rescan event's run then goes to the other worker, and the
    index matches the folder."""
    import signal

    monkeypatch.setenv("PREFECT_SERVER_CONCURRENCY_INITIAL_DEPLOYMENT_LEASE_DURATION", "30")
    folders = {s: tmp_path / s for s in SOURCES}
    for f in folders.values():
        f.mkdir()
    config = write_config(tmp_path, folders)
    docs = folders["docs"]
    with prefect_server(tmp_path) as (_, env), ExitStack() as stack:
        env = {**env, "PYTHONPATH": str(ROOT), "FRESHRAG_ROOT": str(ROOT),
               "FRESHRAG_CONFIG": str(config)}
        _prefect(env, "work-pool", "create", "freshrag", "--type", "process")
        _prefect({**env, "FRESHRAG_HOME": str(tmp_path / "home")}, "deploy", "--all",
                 "--prefect-file", "deployments/prefect.yaml")

        def worker(n: int) -> subprocess.Popen[bytes]:
            log = stack.enter_context((tmp_path / f"worker{n}.log").open("w"))
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool",
                 "freshrag", "--name", f"w{n}"], cwd=tmp_path, env=env, stdout=log,
                stderr=subprocess.STDOUT)
            stack.callback(_stop, proc)
            return proc
        first = worker(0)
        keys = []
        for n in range(150):
            (docs / f"k{n}.md").write_text(f"# K{n}\n\nKilled run note {n}, word v{n}x.\n")
            keys.append(f"k{n}.md")
        subprocess.run([sys.executable, "-c", EMIT, json.dumps([("docs", keys)])], env=env,
                       check=True, timeout=120)

        def running() -> list[Any]:
            return [r for r in _runs(env) if r.state and r.state.is_running()]
        wait_until(lambda: bool(running()), "the run started")
        victim = running()[0]
        first.send_signal(signal.SIGKILL)
        pid = str(victim.infrastructure_pid or "").rsplit(":", 1)[-1]
        if pid.isdigit():
            os.kill(int(pid), signal.SIGKILL)
        worker(1)
        subprocess.run([sys.executable, "-c", EMIT, json.dumps([("docs", None)])], env=env,
                       check=True, timeout=120)
        wait_until(lambda: _keys(config, "docs") == files_in(docs), "index converged",
                   limit=600)

        def rescanned() -> bool:
            return any(r.state and r.state.is_completed() and r.parameters.get("keys") is None
                       for r in _runs(env))
        wait_until(rescanned, "the rescan after the kill completed", limit=600)
