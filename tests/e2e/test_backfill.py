"""`freshrag sync --workers 2` as a user runs it: the same index as a plain sync, a live edit
under `freshrag watch` searchable before the backfill ends, and its errors in one line."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.userpath import Project, free_port, make_project, wait_until

pytestmark = pytest.mark.slow

N_DOCS = 60
TOPICS = ["harbour cranes", "alpine glaciers", "sourdough baking", "violin making",
          "desert irrigation", "lighthouse keeping"]
# keyword: every document matches "document", so all are returned and ties cannot fall on
# either side of k (tied hits come in the order of the rows on disk, which may differ)
QUERIES = [("how are violins varnished", "hybrid", "10"), ("document 17", "keyword", "100")]
CONFIG = '[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\n'


def _doc(n: int, paragraphs: int = 1) -> str:
    topic = TOPICS[n % len(TOPICS)]
    body = "\n\n".join(
        f"Paragraph {p} of document {n} is about {topic}: notes number {n * 7 + p} on how "
        f"{topic} changed over the years, with the people, tools and places involved."
        for p in range(paragraphs))
    return f"# Document {n}: {topic}\n\n{body}\n"


def _workers(pid: int) -> list[int]:
    """The Dask worker processes a `freshrag sync --workers` process started (its children
    started by multiprocessing's spawn)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            out.append(int(stat.parent.name))
    return out


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _ids(home: Path) -> dict[str, list[str]]:
    """Each document's chunk hashes as the ledger recorded them (the chunk ids derive from
    source, key, hash and ordinal)."""
    with sqlite3.connect(home / "ledger.db") as db:
        rows = db.execute("SELECT doc_key, chunk_hashes FROM freshrag_documents").fetchall()
    return {key: json.loads(hashes) for key, hashes in rows}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, Path, Path]]:
    """One 60-document folder synced into two fresh homes: plainly, and with --workers 2."""
    gen = make_project(tmp_path_factory.mktemp("backfill"))
    project = next(gen)
    project.write_config(CONFIG)
    for n in range(N_DOCS):
        (project.docs / f"doc{n:02d}.md").write_text(_doc(n), encoding="utf-8")
    plain, fanned = project.root / "plain", project.root / "fanned"
    done = project.run("sync", "--home", str(plain))
    assert done.returncode == 0, done.stderr[-3000:]
    done = project.run("sync", "--workers", "2", "--home", str(fanned))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"documents: {N_DOCS} added" in done.stdout, done.stdout
    assert "range 1/" in done.stderr  # the key ranges ran as Prefect tasks
    yield project, plain, fanned
    gen.close()


def test_workers_2_gives_the_index_a_plain_sync_gives(pair: tuple[Project, Path, Path]) -> None:
    project, plain, fanned = pair
    done = project.run("verify", "--home", str(fanned))
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stdout + done.stderr
    assert _ids(fanned) == _ids(plain) and len(_ids(plain)) == N_DOCS
    for query, mode, k in QUERIES:
        hits = [sorted(project.json("search", query, "-k", k, "--mode", mode, "--home", str(home)),
                       key=lambda h: (-round(h["score"], 4), h["doc_key"], h["text"]))
                for home in (plain, fanned)]
        assert hits[0] and [(h["doc_key"], h["text"]) for h in hits[0]] == \
            [(h["doc_key"], h["text"]) for h in hits[1]], query
        assert [h["score"] for h in hits[0]] == pytest.approx([h["score"] for h in hits[1]],
                                                              abs=1e-4)


def test_a_bad_cluster_address_is_one_line_and_exit_2(pair: tuple[Project, Path, Path]) -> None:
    project, _, _ = pair
    address = f"tcp://127.0.0.1:{free_port()}"
    done = project.run("sync", "--cluster", address, "--home", str(project.root / "none"))
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and address in lines[0] and "Traceback" not in done.stderr, lines


def test_a_live_edit_is_searchable_before_the_backfill_ends(tmp_path: Path) -> None:
    """An indexed file edited under `freshrag watch` while `sync --workers 2` backfills the
    rest of its folder: the watcher's batch goes first (ordering, not timing, is asserted).
    One worker is killed during the backfill: nothing is lost."""
    gen = make_project(tmp_path)
    project = next(gen)
    try:
        project.write_config(CONFIG)
        target = project.docs / "aaa-target.md"
        target.write_text("# Target\n\nThe first version speaks of copper kettles.\n")
        home = str(project.root / "home")
        assert project.run("sync", "--home", home).returncode == 0
        for n in range(N_DOCS):  # the backfill's part: not indexed yet
            (project.docs / f"doc{n:02d}.md").write_text(_doc(n, 6), encoding="utf-8")
        backfill = project.start("sync", "--workers", "2", "--home", home, name="backfill")
        backfill.wait_for_log("range(s)", 300)  # planned: the backfill is in flight
        workers = wait_until(lambda: _workers(backfill.proc.pid), "the Dask workers", 120)
        os.kill(workers[0], signal.SIGKILL)  # a worker dies mid-range: the range is redone
        watch = project.start("watch", "--record", "off", "--home", home)
        watch.wait_for_log("ready", 300)
        target.write_text("# Target\n\nThe second version speaks of zinc teapots.\n")

        def searchable() -> bool:
            hits = project.json("search", "zinc teapots", "--mode", "keyword", "--home", home)
            return any(h["doc_key"] == "aaa-target.md" and "zinc" in h["text"] for h in hits)
        wait_until(searchable, "the edit searchable", 120, 0.2)
        assert backfill.proc.poll() is None and "backfilled" not in backfill.log(), \
            "the backfill ended before the live edit was searchable"
        assert backfill.proc.wait(600) == 0, backfill.log()[-3000:]
        watch.stop()
        done = project.run("verify", "--home", home)
        assert done.returncode == 0 and done.stdout.startswith("ok"), done.stdout + done.stderr
        assert len(_ids(Path(home))) == N_DOCS + 1
    finally:
        gen.close()


def test_ctrl_c_shuts_the_cluster_down(tmp_path: Path) -> None:
    """SIGINT during a backfill: the command exits and leaves no process behind (workers,
    their parse children, Prefect's temporary server)."""
    gen = make_project(tmp_path)
    project = next(gen)
    try:
        project.write_config(CONFIG)
        for n in range(8):
            (project.docs / f"doc{n:02d}.md").write_text(_doc(n, 6), encoding="utf-8")
        backfill = project.start("sync", "--workers", "2", "--home", str(tmp_path / "home"),
                                 name="cut")
        backfill.wait_for_log("range(s)", 300)
        wait_until(lambda: len(_workers(backfill.proc.pid)) == 2, "the Dask workers", 120)
        spawned = _descendants(backfill.proc.pid)
        backfill.proc.send_signal(signal.SIGINT)
        assert backfill.proc.wait(120) == 130
        wait_until(lambda: not {p for p in spawned if Path(f"/proc/{p}").exists()},
                   "every process the backfill started to exit", 60)
        assert "backfill interrupted" in backfill.log(), backfill.log()[-3000:]
    finally:
        gen.close()
