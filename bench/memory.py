"""RSS of `freshrag watch` (the installed command) and of its children (the parse worker, and a
Prefect server if one were started): idle after start, at the peak of a burst of new files, and
idle again after it; progress is read from a `freshrag serve` beside it (GET /status). The
watcher runs as on a laptop: no PREFECT_API_URL, the default `--record auto`. The embedder's
share is a harness figure: the configured embedder alone in a Python process."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.api_load import wait_ready
from bench.common import alive, command_env, folder_config, launch, stop, write
from bench.freshness import until
from tests.corpus import markdown_doc
from tests.e2e.userpath import free_port

IDLE_S = 10.0  # the watcher trims its heap after 5 s without a batch: idle is after that
RELEASE_S = 30.0  # the bench's --release-after (the command's default is 300 s)


def rss_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            name, value = line.split(":", 1)
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return fields


def _role(cmdline: list[str]) -> str:
    text = " ".join(cmdline)
    if "freshrag.parse_worker" in text:
        return "parse worker"
    if "prefect.server" in text or "prefect server" in text:
        return "prefect server"
    return text[:60]


def children_mb(pid: int) -> dict[str, float]:
    """RSS of each descendant of `pid`, MB, by what it is."""
    import psutil

    out: dict[str, float] = {}
    for p in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            role = _role(p.cmdline())
            out[role] = round(out.get(role, 0.0) + p.memory_info().rss / 2**20, 1)
    return out


def tree_mb(pid: int) -> float:
    """RSS of the process and all its children, MB (what the machine gives the watcher)."""
    import psutil

    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return round(total / 2**20, 1)


def _released_tree(pid: int) -> float:
    """The tree's RSS once the watcher has been idle past --release-after: its parse worker
    stopped (no child left), the model unloaded."""
    import psutil

    until(lambda: not psutil.Process(pid).children(recursive=True), timeout=RELEASE_S + 60,
          every=0.5)
    time.sleep(2.0)  # the unload's trim follows the worker's exit
    return tree_mb(pid)


def _one_change(path: Path, url: str, documents: int) -> float:
    """Seconds from writing one new file to the status counting `documents` indexed."""
    began = time.perf_counter()
    write(path, f"# {path.stem}\n\nOne new document, written while the watcher is idle.\n")
    until(lambda: indexed_documents(url) >= documents, timeout=120, every=0.05)
    return round(time.perf_counter() - began, 2)


def indexed_documents(url: str) -> int:
    import httpx

    try:
        r = httpx.get(url + "/status", timeout=30)
    except httpx.HTTPError:
        return -1
    return sum(s["documents"] for s in r.json()["sources"] if s["source"] == "docs")


_EMBEDDER = """
import json, sys
from pathlib import Path
def rss():
    return int(next(l for l in Path("/proc/self/status").read_text().splitlines()
                    if l.startswith("VmRSS")).split()[1]) / 1024
from freshrag.config import ModelConfig
from freshrag.embed import make_embedder
spec = json.loads(sys.stdin.read())
embedder = make_embedder(ModelConfig(**spec["model"]))
base = rss()
embedder.embed(["warm up"])
loaded = rss()
for start in range(0, len(spec["texts"]), 64):
    embedder.embed(spec["texts"][start:start + 64])
hwm = int(next(l for l in Path("/proc/self/status").read_text().splitlines()
               if l.startswith("VmHWM")).split()[1]) / 1024
from freshrag.trim import trim
getattr(embedder, "trim", lambda: None)()  # as the watcher does once idle
trim()
print(json.dumps({"loaded_mb": round(loaded - base, 1), "burst_peak_mb": round(hwm - base, 1),
                  "after_burst_mb": round(rss() - base, 1)}))
"""


def embedder_share(model: dict[str, str], texts: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Harness: the configured embedder alone in a Python process (its classes imported first,
    then the runtime and model loaded, then the burst's texts embedded in batches of 64, as
    the engine does, then the heap trimmed as the idle watcher does): MB above the process
    before the model loaded."""
    done = subprocess.run([sys.executable, "-c", _EMBEDDER],
                          input=json.dumps({"model": model, "texts": texts}), env=env,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    share: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return share


def run(burst: int, model: dict[str, str] | None = None) -> dict[str, Any]:
    """`model`: [model] keys of the watcher's freshrag.toml (default: the default backend)."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        docs = tmp / "docs"
        write(docs / "seed.md", "# Seed\n\nThe first document.\n")
        config = folder_config(tmp, docs)
        keys: dict[str, str] = dict(model or {})
        if model:
            from bench.backends import WORK

            keys["cache_dir"] = str(WORK / "models")
            lines = "".join(f'{k} = "{v}"\n' for k, v in keys.items())
            config.write_text(config.read_text() + f"[model]\n{lines}")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        laptop = {k: v for k, v in command_env(config).items() if k != "PREFECT_API_URL"}
        watch = launch(config, "watch", "docs", "--release-after", f"{RELEASE_S:g}", env=laptop)
        serve = launch(config, "serve", "--port", str(port))
        texts = [markdown_doc(i, sections=1, paragraphs=1, words=60) for i in range(burst)]
        try:
            wait_ready(url, serve)
            until(lambda: alive(watch, "freshrag watch") and indexed_documents(url) >= 1,
                  timeout=180, every=0.5)
            time.sleep(IDLE_S)
            idle, idle_tree, idle_kids = rss_mb(watch.pid), tree_mb(watch.pid), \
                children_mb(watch.pid)
            released = _released_tree(watch.pid)
            cold_s = _one_change(docs / "cold.md", url, 2)  # parse worker and model start again
            warm_s = _one_change(docs / "warm.md", url, 3)
            tree_peak = max(idle_tree, tree_mb(watch.pid))
            began = time.perf_counter()
            for i, text in enumerate(texts):
                write(docs / f"burst/b{i:04d}.md", text)

            def done() -> bool:
                nonlocal tree_peak
                tree_peak = max(tree_peak, tree_mb(watch.pid))
                # the seed, the two single changes and the burst
                return alive(watch, "freshrag watch") and indexed_documents(url) >= burst + 3

            until(done, timeout=900, every=0.5)
            took = time.perf_counter() - began
            time.sleep(IDLE_S)
            after, after_tree, after_kids = rss_mb(watch.pid), tree_mb(watch.pid), \
                children_mb(watch.pid)
            after_released = _released_tree(watch.pid)
        finally:
            stop(watch, serve)
        share = embedder_share(keys, texts, laptop)
    return {"burst": burst, "date": time.strftime("%Y-%m-%d"),
            "record": "auto (no PREFECT_API_URL: not recorded)",
            "idle_mb": idle["VmRSS"], "idle_peak_mb": idle["VmHWM"],
            "idle_tree_mb": idle_tree, "idle_children_mb": idle_kids,
            "burst_mb": after["VmHWM"], "burst_tree_mb": tree_peak,
            "burst_indexed_s": round(took, 1),
            "after_burst_mb": after["VmRSS"], "after_burst_tree_mb": after_tree,
            "after_burst_children_mb": after_kids,
            "release_after_s": RELEASE_S, "released_tree_mb": released,
            "after_burst_released_tree_mb": after_released,
            "change_after_release_s": cold_s, "change_warm_s": warm_s,
            "embedder_mb": share, "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "measured": f"product: `freshrag watch` (no PREFECT_API_URL) process RSS: VmRSS "
                        f"idle ({IDLE_S:g} s after start-up / after the burst was indexed), "
                        "VmHWM for the burst's peak; tree: the process and its children (RSS "
                        "sum; its peak sampled every 0.5 s while the burst was indexed). "
                        "embedder_mb is a harness: the configured embedder alone in a Python "
                        "process, MB above that process before the model loaded. released: "
                        f"watch --release-after {RELEASE_S:g}, measured once its parse worker "
                        "has exited; change_*_s: one new file written to indexed as the API's "
                        "status counts it, just after the release (cold) and again (warm)"}
