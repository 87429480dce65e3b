"""End to end on a real Prefect server: serve.py's deployments, an event from another process,
the triggered sync run, the index, the artifact, and the run in the UI (headless Chromium)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.flows.conftest import ROOT, write_config
from tests.flows.prefect_server import prefect_server
from tests.flows.test_watch import wait_until

pytestmark = pytest.mark.slow

EMIT = """
import json, sys
from prefect.events import emit_event
emit_event("freshrag.source.changed", resource={"prefect.resource.id": "freshrag.source.docs"},
           payload={"keys": json.loads(sys.argv[1]), "observed_at": 1.5})
"""


def _client_call(env: dict[str, str], fn: Any) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), \
            get_client(sync_client=True) as client:
        return fn(client)


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path, Path]]:
    folder = tmp_path / "docs"
    folder.mkdir()
    config = write_config(tmp_path, {"docs": folder})
    with prefect_server(tmp_path) as (base, env):
        env = {**env, "PYTHONPATH": str(ROOT)}
        log = (tmp_path / "serve.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "deployments" / "serve.py"), "--config", str(config),
             "--reconcile-every", "86400"], cwd=tmp_path, env=env, stdout=log,
            stderr=subprocess.STDOUT)
        try:
            def ready() -> bool:
                def check(c: Any) -> bool:
                    deps = c.read_deployments()
                    autos = c.read_automations()
                    return any(d.name == "serve-docs" for d in deps) and any(
                        "docs changed" in a.name for a in autos)
                return bool(_client_call(env, check))
            wait_until(ready, "deployment and its trigger registered")
            yield base, env, folder, config
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def _emit(env: dict[str, str], keys: list[str] | None) -> None:
    subprocess.run([sys.executable, "-c", EMIT, json.dumps(keys)], env=env, check=True,
                   timeout=120)


def _completed_runs(env: dict[str, str]) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    def read(c: Any) -> list[Any]:
        runs = c.read_flow_runs(deployment_filter=DeploymentFilter(
            name=DeploymentFilterName(any_=["serve-docs"])))
        return [r for r in runs if r.state and r.state.is_final()]
    return list(_client_call(env, read))


def test_event_triggers_sync_and_ui_shows_it(served: tuple[str, dict[str, str], Path, Path],
                                            tmp_path: Path) -> None:
    base, env, folder, config = served
    (folder / "e.md").write_text("# Emu\n\nThe emu outruns the ostrich.\n")
    _emit(env, ["e.md"])
    wait_until(lambda: len(_completed_runs(env)) >= 1, "triggered run finished")
    run = _completed_runs(env)[0]
    assert run.state.is_completed(), run.state
    assert run.parameters["keys"] == ["e.md"] and run.parameters["observed_at"] == 1.5

    from flows.engines import close_all, engine_for
    from freshrag.model import Mode

    engine, _ = engine_for(str(config))
    try:
        hits = engine.search("ostrich", k=1, mode=Mode.keyword)
        assert hits and hits[0].doc_key == "e.md"
    finally:
        close_all()

    def artifact(c: Any) -> Any:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        arts = c.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["freshrag-sync-docs"])))
        return [a for a in arts if a.flow_run_id == run.id]
    arts = _client_call(env, artifact)
    assert arts, "no summary artifact"
    md = str(arts[0].data)
    row = [ln for ln in md.splitlines() if ln.startswith("| | ")][0]
    assert row.split("|")[2:9] == [" 1 ", " 0 ", " 0 ", " 0 ", " 0 ", " 0 ", " 0 "]

    # a rescan event (keys null) runs a full reconcile
    (folder / "e.md").unlink()
    _emit(env, None)
    wait_until(lambda: len(_completed_runs(env)) >= 2, "rescan run finished")
    rescan = [r for r in _completed_runs(env) if r.id != run.id][0]
    assert rescan.state.is_completed() and rescan.parameters["keys"] is None

    _ui_check(base, run, tmp_path)


def _ui_check(base: str, run: Any, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    url = f"{base}/runs/flow-run/{run.id}"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=15000",
             "--window-size=1400,1000"]
    env = {**os.environ, "HOME": str(tmp_path)}
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=180, env=env).stdout
    shot = tmp_path / "flow-run.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", url], capture_output=True,
                   timeout=180, env=env)
    print(f"UI screenshot: {shot}")
    assert run.name in dom, "the flow run's name is not on its UI page"
    assert "freshrag-sync" in dom
    assert shot.exists() and shot.stat().st_size > 0
    page = f"{base}/artifacts/key/freshrag-sync-docs"
    art = subprocess.run([chromium, *flags, "--dump-dom", page], capture_output=True, text=True,
                         timeout=180, env=env).stdout
    assert "freshrag sync" in art, "the summary artifact is not on the artifacts page"


def test_events_mode_watcher_drives_deployments(
        served: tuple[str, dict[str, str], Path, Path], tmp_path: Path) -> None:
    """The scale-out path end to end: `freshrag watch --mode events` → trigger → sync run."""
    import signal

    from tests.flows.test_cli_watch import _keys

    _, env, folder, config = served
    (folder / "before.md").write_text("# Before\n\nThe bison was here first.\n")
    log = (tmp_path / "watch.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "freshrag.cli", "watch", "--mode", "events", "-c", str(config)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    home = tmp_path / "home"
    try:
        wait_until(lambda: _keys(home) == {"before.md"}, "start-up reconcile run")
        (folder / "after.md").write_text("# After\n\nThe yak arrived later.\n")
        wait_until(lambda: _keys(home) == {"before.md", "after.md"}, "change run")
        (folder / "before.md").unlink()
        wait_until(lambda: _keys(home) == {"after.md"}, "delete run")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    runs = _completed_runs(env)
    assert all(r.state.is_completed() for r in runs)
    assert any(r.parameters["keys"] is None for r in runs)
    assert any(r.parameters["keys"] == ["after.md"] for r in runs)
