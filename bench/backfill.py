"""Backfill fan-out: chunks/s of `freshrag sync --workers 1` vs `--workers 2` on one corpus,
side by side in one run, with the CPU count and load that bound the ratio."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import FRESHRAG, command_env, folder_config
from bench.throughput import make_corpus


def _backfill(config: Path, home: Path, workers: int) -> tuple[dict[str, Any], float]:
    """`freshrag sync --workers N --json` into a fresh `home`: its report and the wall time
    of the whole command (Prefect server, cluster start and the workers' model loads in)."""
    env = {**command_env(config), "FRESHRAG_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)  # as a user without a server: the command starts one
    start = time.perf_counter()
    done = subprocess.run([str(FRESHRAG), "sync", "--workers", str(workers), "--json"],
                          cwd=config.parent, env=env, capture_output=True, text=True,
                          timeout=7200)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"sync --workers {workers} exited {done.returncode}: "
                           f"{done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report, wall


def run(docs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        make_corpus(tmp / "docs", docs)
        config = folder_config(tmp, tmp / "docs")
        out: dict[str, Any] = {"documents": docs, "cpus": os.cpu_count(),
                               "load_before": round(os.getloadavg()[0], 1)}
        for workers in (1, 2):
            report, wall = _backfill(config, tmp / f"home{workers}", workers)
            chunks = report["chunks"]["embedded"]
            out[f"workers_{workers}"] = {
                "chunks": chunks, "flow_s": report["seconds"], "wall_s": round(wall, 1),
                "chunks_per_s": round(chunks / report["seconds"], 1),
                "chunks_per_s_wall": round(chunks / wall, 1)}
        out["load_after"] = round(os.getloadavg()[0], 1)
    one, two = out["workers_1"], out["workers_2"]
    out["ratio"] = round(two["chunks_per_s"] / one["chunks_per_s"], 2)
    out["ratio_wall"] = round(two["chunks_per_s_wall"] / one["chunks_per_s_wall"], 2)
    out["measured"] = (
        "product: `freshrag sync --workers N --json` into a fresh home (chunks.embedded / the "
        "backfill flow's seconds, worker model loads included; wall: the whole command, "
        f"Prefect's temporary server and cluster start included). {out['cpus']} CPU(s): the "
        "ratio cannot exceed the CPU count, and on a shared machine the other load takes its "
        "share (load average before/after given)")
    return out
