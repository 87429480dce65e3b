"""Backfill fan-out: chunks/s of `freshrag sync --workers 1` vs `--workers 2` on one corpus,
and of `--cluster` on two workers started with `dask worker` (plain, and one declaring a GPU),
side by side in one run, with the CPU count and load that bound the ratios."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.common import FRESHRAG, command_env, folder_config, stop
from bench.throughput import make_corpus

DASK = FRESHRAG.parent / "dask"


def _backfill(config: Path, home: Path, *how: str) -> tuple[dict[str, Any], float]:
    """`freshrag sync --workers N --json` (or `--cluster ADDRESS`) into a fresh `home`: its
    report and the wall time of the whole command (Prefect server, cluster start and the
    workers' model loads in)."""
    env = {**command_env(config), "FRESHRAG_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)  # as a user without a server: the command starts one
    start = time.perf_counter()
    done = subprocess.run([str(FRESHRAG), "sync", *how, "--json"],
                          cwd=config.parent, env=env, capture_output=True, text=True,
                          timeout=7200)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"sync {' '.join(how)} exited {done.returncode}: "
                           f"{done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report, wall


@contextmanager
def dask_cluster(config: Path, tmp: Path, gpu: bool) -> Iterator[str]:
    """`dask scheduler` and two one-thread `dask worker`s as a user starts them (the second
    declaring `--resources GPU=1` when `gpu`: a CPU worker standing in for a GPU one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    env = command_env(config)
    env.pop("PREFECT_API_URL", None)
    with ExitStack() as stack:
        def spawn(name: str, *argv: str) -> Path:
            log = tmp / f"{name}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen([str(DASK), *argv], cwd=tmp, env=env, stdout=out,
                                        stderr=subprocess.STDOUT)
            stack.callback(stop, proc)
            return log
        spawn("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port),
              "--dashboard-address", ":0")
        logs = [spawn(f"worker{n}", "worker", address, "--nthreads", "1", "--name", f"w{n}",
                      *(["--resources", "GPU=1"] if gpu and n == 1 else []))
                for n in range(2)]
        deadline = time.monotonic() + 180
        while not all("Registered to:" in log.read_text(errors="replace") for log in logs):
            if time.monotonic() > deadline:
                raise RuntimeError("the dask workers did not register in 180 s")
            time.sleep(0.5)
        yield address


def _row(report: dict[str, Any], wall: float) -> dict[str, Any]:
    chunks = report["chunks"]["embedded"]
    return {"chunks": chunks, "flow_s": report["seconds"], "wall_s": round(wall, 1),
            "chunks_per_s": round(chunks / report["seconds"], 1),
            "chunks_per_s_wall": round(chunks / wall, 1)}


def run(docs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        make_corpus(tmp / "docs", docs)
        config = folder_config(tmp, tmp / "docs")
        out: dict[str, Any] = {"documents": docs, "cpus": os.cpu_count(),
                               "load_before": round(os.getloadavg()[0], 1)}
        for workers in (1, 2):
            out[f"workers_{workers}"] = _row(*_backfill(
                config, tmp / f"home{workers}", "--workers", str(workers)))
        for gpu in (False, True):
            name = "cluster_2_gpu" if gpu else "cluster_2"
            with dask_cluster(config, tmp, gpu) as address:
                out[name] = _row(*_backfill(config, tmp / f"home-{name}", "--cluster",
                                            address))
        out["load_after"] = round(os.getloadavg()[0], 1)
    one, two = out["workers_1"], out["workers_2"]
    out["ratio"] = round(two["chunks_per_s"] / one["chunks_per_s"], 2)
    out["ratio_wall"] = round(two["chunks_per_s_wall"] / one["chunks_per_s_wall"], 2)
    for name in ("cluster_2", "cluster_2_gpu"):  # against the local cluster of as many workers
        out[f"{name}_ratio"] = round(out[name]["chunks_per_s"] / two["chunks_per_s"], 2)
        out[f"{name}_ratio_wall"] = round(out[name]["chunks_per_s_wall"]
                                          / two["chunks_per_s_wall"], 2)
    out["measured"] = (
        "product: `freshrag sync --workers N --json` / `--cluster ADDRESS --json` into a fresh "
        "home (chunks.embedded / the backfill flow's seconds, worker model loads included; "
        "wall: the whole command, Prefect's temporary server and, for --workers, the cluster's "
        "start included; the --cluster workers were started beforehand with `dask worker`, "
        "cluster_2_gpu's second one declaring GPU=1 on this CPU-only machine, so it embeds "
        f"every range on one CPU). {out['cpus']} CPU(s): the ratio of --workers 2 to 1 cannot "
        "exceed the CPU count, and on a shared machine the other load takes its share (load "
        "average before/after given)")
    return out
