"""The watcher on a real temp folder: every kind of change ends with the index == the folder."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flows.batching import Coalescer
from flows.watch import Watcher, WatchOptions
from freshrag.config import load_settings
from freshrag.model import Mode

WAIT = float(os.environ.get("FRESHRAG_TEST_WAIT", "180"))


def wait_until(pred: Callable[[], bool], what: str, limit: float = WAIT) -> None:
    """Poll for convergence; the limit only stops a hung test, it is not a latency assertion."""
    deadline = time.monotonic() + limit
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"never converged: {what}")
        time.sleep(0.05)


def files_in(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in
                                       p.relative_to(root).parts)}


class Running:
    def __init__(self, watcher: Watcher, thread: threading.Thread):
        self.watcher, self.thread = watcher, thread

    def indexed(self) -> set[str]:
        return set(self.watcher.engine.ledger.fingerprints("docs"))

    def converge(self, root: Path) -> None:
        def done() -> bool:
            return self.watcher.coalescer.pending() == 0 and self.indexed() == files_in(root)
        wait_until(done, "ledger == folder")
        stats = self.watcher.engine.index.stats()
        assert (stats["docs"].documents if "docs" in stats else 0) == len(files_in(root))

    def finds(self, text: str) -> str | None:
        hits = self.watcher.engine.search(text, k=1, mode=Mode.keyword)
        return hits[0].doc_key if hits else None


@pytest.fixture()
def running(folder: Path, config: Path) -> Iterator[Running]:
    settings = load_settings(config)
    watcher = Watcher(settings, ["docs"], WatchOptions(record="off", quiet=0.05, max_delay=0.5))
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    wait_until(watcher.ready.is_set, "start-up reconcile")
    yield Running(watcher, thread)
    watcher.stop()
    thread.join(30)
    assert not thread.is_alive()
    watcher.engine.close()


def test_reconciles_on_start_then_follows(folder: Path, config: Path, tmp_path: Path) -> None:
    (folder / "before.md").write_text("# Before\n\nWritten while the watcher was down.\n")
    settings = load_settings(config)
    watcher = Watcher(settings, ["docs"], WatchOptions(record="off"))
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        wait_until(watcher.ready.is_set, "start-up reconcile")
        assert set(watcher.engine.ledger.fingerprints("docs")) == {"before.md"}
    finally:
        watcher.stop()
        thread.join(30)
        watcher.engine.close()
    assert not thread.is_alive()


def test_every_kind_of_change(running: Running, folder: Path, tmp_path: Path) -> None:
    # create
    (folder / "a.md").write_text("# Alpha\n\nThe aardvark sleeps.\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.md").write_text("# Beta\n\nThe badger digs.\n")
    running.converge(folder)
    # modify in place
    (folder / "a.md").write_text("# Alpha\n\nThe aardvark wakes up hungry.\n")
    wait_until(lambda: running.finds("hungry") == "a.md", "modified text searchable")
    # atomic save: write a temp file, rename it over the original (how editors save)
    tmp = folder / ".b.md.swp"
    tmp.write_text("# Beta\n\nThe badger found honey.\n")
    os.replace(tmp, folder / "sub" / "b.md")
    wait_until(lambda: running.finds("honey") == "sub/b.md", "atomic save searchable")
    # move in from outside the root (a file and a whole folder)
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "c.md").write_text("# Gamma\n\nThe capybara swims.\n")
    (outside / "deep" / "d.md").write_text("# Delta\n\nThe dingo runs.\n")
    shutil.move(str(outside / "c.md"), folder / "c.md")
    shutil.move(str(outside / "deep"), folder / "deep")
    running.converge(folder)
    assert running.finds("dingo") == "deep/d.md"
    # move within: the old key goes, the new key comes
    os.rename(folder / "c.md", folder / "sub" / "c2.md")
    running.converge(folder)
    # move a folder out of the root: everything under it is deleted
    shutil.move(str(folder / "sub"), tmp_path / "gone")
    running.converge(folder)
    assert running.finds("badger") is None
    # delete
    (folder / "a.md").unlink()
    running.converge(folder)
    assert running.indexed() == {"deep/d.md"}


@pytest.mark.slow
def test_burst_of_500_files(running: Running, folder: Path) -> None:
    for n in range(500):
        sub = folder / f"d{n % 10}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{n}.txt").write_text(f"File {n} mentions token{n} and widgets.\n")
    running.converge(folder)
    assert running.finds("token377") == "d7/f377.txt"
    for n in range(0, 500, 2):
        (folder / f"d{n % 10}" / f"f{n}.txt").unlink()
    running.converge(folder)
    assert len(running.indexed()) == 250


def test_overflow_means_rescan(running: Running, folder: Path) -> None:
    import logging

    # A change the observer never saw (as after a lost inotify queue) ...
    (folder / "x.md").write_text("# X\n\nThe xenops sings.\n")
    running.converge(folder)
    before = running.watcher.batches
    logging.getLogger("watchdog.observers.inotify_c").warning(
        "Inotify queue overflowed; filesystem events were lost")
    wait_until(lambda: running.watcher.batches > before, "rescan batch")


def test_coalescer_quiet_and_max_delay() -> None:
    now = [0.0]
    c = Coalescer(quiet=0.1, max_delay=1.0, clock=lambda: now[0])
    c.add("s", ["a", "b"])
    assert c.take(timeout=0) is None
    now[0] = 0.05
    c.add("s", ["b", "c"])
    now[0] = 0.12
    assert c.take(timeout=0) is None  # quiet period restarted at 0.05
    now[0] = 0.16
    batch = c.take(timeout=0)
    assert batch is not None and batch.keys == ["a", "b", "c"]
    for t in range(0, 11):  # a steady trickle: max_delay still cuts it
        now[0] = 1.0 + t * 0.09
        c.add("s", [f"k{t}"])
    now[0] = 2.0
    batch = c.take(timeout=0)
    assert batch is not None and len(batch.keys or []) == 11
    c.add("s", ["z"])
    c.rescan("s")
    c.add("s", ["y"])
    now[0] = 3.0
    batch = c.take(timeout=0)
    assert batch is not None and batch.keys is None


def test_a_quiet_watcher_folds_new_chunks_into_the_index(running: Running, folder: Path) -> None:
    """A save is searchable at once (exactly, not yet folded in); once the watcher has been
    quiet for TIDY_AFTER_IDLE_S it runs the index's optimize() (ANN, full-text) itself."""
    (folder / "heron.md").write_text("# Heron\n\nThe grey heron stalks the reeds.\n")
    wait_until(lambda: running.finds("heron") == "heron.md", "new file searchable")
    wait_until(lambda: running.watcher.engine._writes_since_optimize == 0,
               "the quiet watcher folded its writes in")
    assert running.finds("heron") == "heron.md"
