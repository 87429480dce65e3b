"""Prefect is the record, not the hot path: `freshrag watch` as a user runs it, with Prefect
away, coming back, recording only what changed, and the served deployments' warm engine."""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.userpath import Background, Project, free_port, wait_until
from tests.flows.prefect_server import prefect_server

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
READY = "; ready"


def _client_call(url: str, fn: Any) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        return fn(client)


def _found(base: str, token: str) -> bool:
    try:
        r = httpx.post(f"{base}/search", json={"query": token, "mode": "keyword", "k": 3},
                       timeout=10)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and any(token in h["text"] for h in r.json()["hits"])


def _watch_task_runs(url: str) -> list[Any]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    flows = FlowFilter(name=FlowFilterName(any_=["freshrag-watch"]))
    return list(_client_call(url, lambda c: c.read_task_runs(flow_filter=flows)))


def _folder_project(project: Project, port: int) -> str:
    url = f"http://127.0.0.1:{port}/api"
    project.env["PREFECT_API_URL"] = url
    project.write_config(f'home = "{project.root / "state"}"\n\n[[sources]]\nname = "docs"\n'
                         'type = "folder"\npath = "docs"\n')
    return url


def test_watch_indexes_with_prefect_down_and_records_once_it_is_back(
        project: Project, tmp_path: Path) -> None:
    port = free_port()  # nothing listens here until the server below starts on it
    url = _folder_project(project, port)
    (project.docs / "a.md").write_text("# A\n\nThe aardvark digs.\n")
    watch = project.start("watch")
    watch.wait_for_log(READY, 300)
    _, base = project.serve()
    (project.docs / "b.md").write_text("# B\n\nThe quokka smiles zqkone.\n")
    wait_until(lambda: _found(base, "zqkone"), "a save indexed while Prefect is unreachable")
    assert watch.proc.poll() is None
    assert watch.log().count("Prefect unreachable") == 1, watch.log()

    with prefect_server(tmp_path, port=port):
        watch.wait_for_log("recording in Prefect resumed", 180)

        def recorded() -> set[str]:
            return {t.name for t in _watch_task_runs(url) if t.state and t.state.is_completed()}
        # the start-up reconcile and the save made while Prefect was away, recorded afterwards
        wait_until(lambda: {"docs: rescan", "docs: 1 key(s)"} <= recorded(),
                   "the batches applied during the outage recorded", 120)
        (project.docs / "c.md").write_text("# C\n\nThe capybara naps zqktwo.\n")
        wait_until(lambda: _found(base, "zqktwo"), "a save indexed with Prefect back")
        wait_until(lambda: len(_watch_task_runs(url)) >= 3, "the new batch recorded", 120)
    assert watch.stop() == 0, watch.log()[-3000:]
    lines = [ln for ln in watch.log().splitlines() if "freshrag.watch" in ln]
    assert lines and all(ln[:4].isdigit() and ln[10] == " " for ln in lines), lines[:3]
    assert sum("(1 key(s))" in ln for ln in lines) == 2  # each batch logged once


def _sqlite_tables(db: Path) -> None:
    with sqlite3.connect(db) as c:
        for table in ("t1", "t2"):
            c.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, body TEXT, v INTEGER)")
            c.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)",
                          [(i, f"{table} row {i} about printers", i) for i in range(5)])


def test_noop_polls_make_no_task_runs(project: Project, tmp_path: Path) -> None:
    db = project.root / "data.db"
    _sqlite_tables(db)
    blocks = [f'home = "{project.root / "state"}"', ""]
    for table in ("t1", "t2"):
        blocks += ["[[sources]]", f'name = "{table}"', 'type = "sql"', f'url = "sqlite:///{db}"',
                   f'table = "{table}"', 'key = "id"', 'text = "{body}"', 'cursor = "v"',
                   "poll_interval = 0.5", ""]
    project.write_config("\n".join(blocks))
    with prefect_server(tmp_path) as (_, env):
        url = env["PREFECT_API_URL"]
        # the API set in the active Prefect profile, not the environment: --record auto (the
        # default) records there too
        home = Path(project.env["PREFECT_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        (home / "profiles.toml").write_text(
            f'active = "laptop"\n\n[profiles.laptop]\nPREFECT_API_URL = "{url}"\n')
        watch = project.start("watch", "--poll", "0.5")
        watch.wait_for_log(READY, 300)
        wait_until(lambda: len(_watch_task_runs(url)) >= 2, "the start-up reconciles recorded")
        time.sleep(5)  # ~10 no-op polls per table
        with sqlite3.connect(db) as c:
            c.execute("UPDATE t1 SET body = 'the zqrow printer is fixed', v = 100 WHERE id = 2")
        watch.wait_for_log("t1 (rescan): 1 updated", 60)
        wait_until(lambda: len(_watch_task_runs(url)) >= 3, "the change recorded", 120)
        time.sleep(5)  # more no-op polls, which must not show up
        runs = _watch_task_runs(url)
        assert watch.stop() == 0
    assert sorted(r.name for r in runs) == ["t1: rescan", "t1: rescan", "t2: rescan"], \
        [r.name for r in runs]


def test_events_mode_holds_changes_then_served_runs_use_a_warm_engine(
        project: Project, tmp_path: Path) -> None:
    port = free_port()
    url = _folder_project(project, port)
    watch = project.start("watch", "--mode", "events")
    watch.wait_for_log(READY, 300)
    (project.docs / "held.md").write_text("# Held\n\nThe heron waits zqheld.\n")
    watch.wait_for_log("Prefect unreachable", 60)
    with prefect_server(tmp_path, port=port):
        served = project.spawn([sys.executable, str(ROOT / "deployments" / "serve.py"),
                                "--config", str(project.config)], "serve-py")
        served.wait_for_log(READY, 300)
        _, base = project.serve()
        wait_until(lambda: _found(base, "zqheld"), "the change held during the outage indexed",
                   180)
        for n in range(2):
            (project.docs / f"s{n}.md").write_text(f"# S{n}\n\nThe swift flies zqs{n}x.\n")
            wait_until(lambda n=n: _found(base, f"zqs{n}x"), f"save {n} indexed via a run", 120)
        # a run that made its change searchable may not show a final state yet
        def finished() -> list[Any] | None:
            got = _served_runs(url)
            return got if len(got) >= 3 else None
        runs = wait_until(finished, "three served runs finished", 60, 0.5)
        assert all(r.state.is_completed() for r in runs), runs
        # a run's logs reach the server in batches, after the run may already show Completed
        def all_logged() -> dict[Any, str] | None:
            got = {r.id: _run_logs(url, r.id) for r in runs}
            return got if all(got.values()) else None
        logs = wait_until(all_logged, "every run's logs on the server", 60, 0.5)
        assert all("engine: warm" in text for text in logs.values()), logs
        assert not any("engine: cold" in text for text in logs.values())
        assert watch.stop() == 0
        _stop(served)
    assert watch.log().count("Prefect unreachable") == 1, watch.log()


def _served_runs(url: str) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    dep = DeploymentFilter(name=DeploymentFilterName(any_=["serve-docs"]))
    runs = _client_call(url, lambda c: c.read_flow_runs(deployment_filter=dep))
    return [r for r in runs if r.state and r.state.is_final()]


def _run_logs(url: str, run_id: Any) -> str:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
    return "\n".join(lg.message for lg in _client_call(url, lambda c: c.read_logs(flt)))


def _stop(bg: Background) -> None:
    bg.stop()
