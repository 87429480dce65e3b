"""`freshrag watch` without a Prefect API, as a user starts it on a laptop: by default it records
nothing, starts no Prefect server and says so once; `--record task` records each batch in a
temporary server of its own whose output stays out of the watcher's, stopped with it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.e2e.userpath import Background, Project, wait_until

pytestmark = pytest.mark.slow
READY = "; ready"
NOT_RECORDED = "batches are not recorded in Prefect: no Prefect API is configured"


def _folder_project(project: Project) -> None:
    project.write_config(f'home = "{project.root / "state"}"\n\n[[sources]]\nname = "docs"\n'
                         'type = "folder"\npath = "docs"\n')
    (project.docs / "a.md").write_text("# A\n\nThe aardvark digs.\n")


def _children(bg: Background) -> list[str]:
    """The command lines of everything the watcher runs below it."""
    out = []
    for child in psutil.Process(bg.proc.pid).children(recursive=True):
        try:
            out.append(" ".join(child.cmdline()))
        except psutil.Error:
            continue
    return out


def _found(project: Project, token: str) -> bool:
    hits = project.json("search", token, "--mode", "keyword")
    return any(token in h["text"] for h in hits)


def test_by_default_a_watch_without_a_prefect_api_starts_no_server(project: Project) -> None:
    _folder_project(project)
    watch = project.start("watch")
    watch.wait_for_log(READY, 300)
    kids = _children(watch)
    assert len(kids) == 1 and "freshrag.parse_worker" in kids[0], kids
    (project.docs / "b.md").write_text("# B\n\nThe quokka smiles zqnoapi.\n")
    wait_until(lambda: _found(project, "zqnoapi"), "a save searchable", 120, 0.5)
    assert _children(watch) == kids  # a batch applied: still no Prefect server
    assert watch.stop() == 0, watch.log()[-3000:]
    log = watch.log()
    assert log.count(NOT_RECORDED) == 1, log
    assert "PREFECT_API_URL" in log and "--record task" in log
    assert "Traceback" not in log and "temporary server" not in log, log


def _task_runs(url: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    flows = FlowFilter(name=FlowFilterName(any_=["freshrag-watch"]))
    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        return list(client.read_task_runs(flow_filter=flows))


def test_record_task_without_an_api_records_in_a_quiet_temporary_server(
        project: Project) -> None:
    _folder_project(project)
    watch = project.start("watch", "--record", "task")
    watch.wait_for_log(READY, 300)
    said = re.search(r"recording in a temporary Prefect server at (\S+) \(its log: ([^)]+)\)",
                     watch.log())
    assert said, watch.log()
    url, server_log = said.group(1), Path(said.group(2))
    server = [c for c in psutil.Process(watch.proc.pid).children(recursive=True)
              if "prefect.server" in " ".join(c.cmdline())]
    assert len(server) == 1
    (project.docs / "b.md").write_text("# B\n\nThe quokka smiles zqtask.\n")
    wait_until(lambda: _found(project, "zqtask"), "a save searchable", 120, 0.5)

    def recorded() -> set[str]:
        return {t.name for t in _task_runs(url) if t.state and t.state.is_completed()}
    wait_until(lambda: {"docs: rescan", "docs: 1 key(s)"} <= recorded(),
               "the start-up reconcile and the save recorded", 120, 0.5)
    assert watch.stop() == 0, watch.log()[-3000:]
    wait_until(lambda: not server[0].is_running() or server[0].status() == "zombie",
               "the temporary server stopped with the watcher", 30, 0.2)
    assert "Traceback" not in watch.log(), watch.log()
    assert server_log.is_file() and server_log.parent == project.root / "state"
