"""RSS of `freshrag watch` (the installed command) and of its children (the parse worker):
idle after start, and after a burst of new files; progress is read from a `freshrag serve`
beside it (GET /status)."""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.api_load import wait_ready
from bench.common import alive, folder_config, launch, stop, write
from bench.freshness import until
from tests.corpus import markdown_doc
from tests.e2e.userpath import free_port


def rss_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            name, value = line.split(":", 1)
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return fields


def tree_mb(pid: int) -> float:
    """RSS of the process and all its children, MB (what the machine gives the watcher)."""
    import psutil

    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return round(total / 2**20, 1)


def indexed_documents(url: str) -> int:
    import httpx

    try:
        r = httpx.get(url + "/status", timeout=30)
    except httpx.HTTPError:
        return -1
    return sum(s["documents"] for s in r.json()["sources"] if s["source"] == "docs")


def run(burst: int, model: dict[str, str] | None = None) -> dict[str, Any]:
    """`model`: [model] keys of the watcher's freshrag.toml (default: the default backend)."""
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        docs = tmp / "docs"
        write(docs / "seed.md", "# Seed\n\nThe first document.\n")
        config = folder_config(tmp, docs)
        if model:
            from bench.backends import WORK

            keys = "".join(f'{k} = "{v}"\n' for k, v in model.items())
            config.write_text(config.read_text()
                              + f'[model]\n{keys}cache_dir = "{WORK / "models"}"\n')
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        watch = launch(config, "watch", "docs")
        serve = launch(config, "serve", "--port", str(port))
        try:
            wait_ready(url, serve)
            until(lambda: alive(watch, "freshrag watch") and indexed_documents(url) >= 1,
                  timeout=180, every=0.5)
            time.sleep(3)
            idle = rss_mb(watch.pid)
            idle_tree = tree_mb(watch.pid)
            tree_peak = idle_tree
            began = time.perf_counter()
            for i in range(burst):
                write(docs / f"burst/b{i:04d}.md", markdown_doc(i, sections=1, paragraphs=1,
                                                                words=60))
            def done() -> bool:
                nonlocal tree_peak
                tree_peak = max(tree_peak, tree_mb(watch.pid))
                return alive(watch, "freshrag watch") and indexed_documents(url) >= burst + 1

            until(done, timeout=900, every=0.5)
            took = time.perf_counter() - began
            peak = rss_mb(watch.pid)
        finally:
            stop(watch, serve)
    return {"burst": burst, "idle_mb": idle["VmRSS"], "idle_peak_mb": idle["VmHWM"],
            "burst_mb": peak["VmHWM"], "burst_indexed_s": round(took, 1),
            "idle_tree_mb": idle_tree, "burst_tree_mb": tree_peak,
            "measured": "product: `freshrag watch` process RSS (VmRSS idle, VmHWM peak); "
                        "tree: the process and its children (RSS sum, idle; max while the "
                        "burst was indexed, sampled every 0.5 s)"}
