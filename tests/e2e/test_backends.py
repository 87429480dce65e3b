"""`[model] backend` through the installed command: the default (openvino) syncs and searches,
and `watch` (with its parse worker) and `serve` never map libtorch; switching to torch keeps the
index (the same vectors: nothing re-embedded); switching to onnx int8 refuses a vector search in
one line until `freshrag sync` has re-embedded."""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.userpath import Project, wait_until

CONFIG = '[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\n'
INT8 = {"FRESHRAG_MODEL__BACKEND": "onnx", "FRESHRAG_MODEL__PRECISION": "int8"}
TORCH = {"FRESHRAG_MODEL__BACKEND": "torch"}
DEFAULT: dict[str, str] = {}
DOCS = {
    "pasta.md": "# Cafeteria\n\nThe cafeteria serves fresh pasta with tomato sauce every Friday.\n",
    "rockets.md": "# Launch\n\nThe rocket engine burns liquid oxygen and kerosene at liftoff.\n",
    "garden.md": "# Garden\n\nTomatoes and basil grow best in full sun with regular watering.\n",
}


def maps_torch(pid: int) -> list[str]:
    """The shared objects of torch mapped into the process (empty: torch was never imported)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({line.split()[-1] for line in maps.splitlines() if "libtorch" in line})


def tree(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def top(project: Project, query: str, env: dict[str, str]) -> str:
    hits = project.json("search", query, "--mode", "vector", "-k", "1", env=env)
    return str(hits[0]["doc_key"])


@pytest.mark.slow
def test_default_backend_syncs_searches_and_keeps_torch_out_of_watch_and_serve(
        project: Project) -> None:
    project.write_config(CONFIG)
    for name, text in DOCS.items():
        (project.docs / name).write_text(text)
    report = project.json("sync")
    assert report["documents"]["added"] == 3 and report["chunks"]["embedded"] == 3, report
    assert top(project, "what is for lunch on friday", DEFAULT) == "pasta.md"

    watch = project.start("watch", "--record", "off")
    watch.wait_for_log("; ready", 180)
    serve, base = project.serve()
    (project.docs / "moon.md").write_text("# Moon\n\nApollo astronauts walked on the lunar "
                                          "surface and brought back moon rocks.\n")

    def found() -> bool:
        r = httpx.post(f"{base}/search", json={"query": "astronauts on the moon", "k": 1,
                                               "mode": "vector"}, timeout=30)
        return r.status_code == 200 and r.json()["hits"][0]["doc_key"] == "moon.md"

    wait_until(found, "the watcher to index moon.md (through its parse worker)", 120, 0.2)
    watched = tree(watch.proc.pid)
    assert any("parse_worker" in " ".join(p.cmdline()) for p in watched), "no parse worker"
    for proc in [*watched, *tree(serve.proc.pid)]:
        assert maps_torch(proc.pid) == [], (proc.cmdline(), maps_torch(proc.pid))
    project.stop_all()

    # torch computes the same vectors: the index is kept, nothing is re-embedded
    same = project.json("sync", env=TORCH)
    assert same["chunks"]["embedded"] == 0 and same["chunks"]["written"] == 0, same
    assert top(project, "astronauts on the moon", TORCH) == "moon.md"

    # int8 vectors are another model's: its query vector is refused, in one line, exit 2
    refused = project.run("search", "astronauts", "--mode", "vector", env=INT8)
    assert refused.returncode == 2, refused
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "re-embed" in refused.stderr, refused.stderr
    keyword = project.json("search", "astronauts", "--mode", "keyword", env=INT8)
    assert keyword[0]["doc_key"] == "moon.md"  # no vectors involved: still answered

    again = project.json("sync", env=INT8)  # re-embeds every chunk with int8
    assert again["chunks"]["embedded"] == 4 and again["chunks"]["written"] == 4, again
    assert top(project, "what is for lunch on friday", INT8) == "pasta.md"
    assert top(project, "astronauts on the moon", INT8) == "moon.md"
