"""`freshrag watch --release-after S`, as a user runs it: idle past S it stops its parse worker
and unloads the model (the tree's memory drops, it says so once), and the next save is still
indexed and searchable, the parse worker started again. The watcher never loads pandas."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from tests.e2e.userpath import Background, Project, wait_until

pytestmark = pytest.mark.slow
RELEASED = "stopped the parse worker and unloaded the model"


def _workers(bg: Background) -> list[psutil.Process]:
    return [c for c in psutil.Process(bg.proc.pid).children(recursive=True)
            if "freshrag.parse_worker" in " ".join(c.cmdline())]


def _rss_mb(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2**20


def _folder_project(project: Project) -> None:
    project.write_config(f'home = "{project.root / "state"}"\n\n[[sources]]\nname = "docs"\n'
                         'type = "folder"\npath = "docs"\n')
    (project.docs / "a.md").write_text("# A\n\nThe aardvark digs.\n")


def _found(project: Project, token: str) -> bool:
    hits = project.json("search", token, "--mode", "vector", "-k", "3")
    return any(token in h["text"] for h in hits)


def test_an_idle_watcher_gives_back_its_parse_worker_and_model(project: Project) -> None:
    _folder_project(project)
    watch = project.start("watch", "--release-after", "4")
    watch.wait_for_log("; ready", 300)
    me = psutil.Process(watch.proc.pid)
    warm = _rss_mb(me)
    assert len(_workers(watch)) == 1
    wait_until(lambda: RELEASED in watch.log(), "released after 4 s idle", 60, 0.2)
    wait_until(lambda: not _workers(watch), "the parse worker exited", 30, 0.2)
    assert _rss_mb(me) < warm - 30, (warm, _rss_mb(me))  # the model's runtime is unloaded
    # pandas (which Arrow and LanceDB import when installed) is kept out of the watcher
    assert "/pandas/" not in Path(f"/proc/{me.pid}/maps").read_text()
    (project.docs / "b.md").write_text("# B\n\nThe quokka smiles zqrelease.\n")
    wait_until(lambda: _found(project, "zqrelease"), "a save after the release searchable",
               120, 0.5)
    assert len(_workers(watch)) == 1  # started again for that save
    wait_until(lambda: watch.log().count(RELEASED) == 2, "released again", 60, 0.2)
    assert watch.stop() == 0, watch.log()[-3000:]
    assert "Traceback" not in watch.log()


def test_release_after_zero_keeps_them_loaded(project: Project) -> None:
    _folder_project(project)
    watch = project.start("watch", "--release-after", "0")
    watch.wait_for_log("; ready", 300)
    worker = _workers(watch)
    time.sleep(8)  # past the trim (5 s) and longer than the other test's release
    assert [w.pid for w in _workers(watch)] == [w.pid for w in worker]
    assert RELEASED not in watch.log()
    assert watch.stop() == 0, watch.log()[-3000:]


def test_with_the_torch_backend_only_the_parse_worker_is_released(project: Project) -> None:
    """torch has no release (it keeps what it frees): the log says only what was done, and the
    torch stack, which probes optional packages itself, runs with pandas importable."""
    _folder_project(project)
    watch = project.start("watch", "--release-after", "3",
                          env={"FRESHRAG_MODEL__BACKEND": "torch"})
    watch.wait_for_log("; ready", 300)
    wait_until(lambda: "idle 3 s: stopped the parse worker; the next change" in watch.log(),
               "released after 3 s idle", 60, 0.2)
    assert not _workers(watch)
    (project.docs / "b.md").write_text("# B\n\nThe quokka smiles zqtorch.\n")
    wait_until(lambda: _found(project, "zqtorch"), "a save after the release searchable", 120,
               0.5)
    assert watch.stop() == 0, watch.log()[-3000:]
    assert "Traceback" not in watch.log() and RELEASED not in watch.log()
