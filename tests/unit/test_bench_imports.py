"""`python -m bench` starts: every part's module imports (a renamed helper in one part once
stopped the whole bench before it measured anything)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import bench

ROOT = Path(__file__).resolve().parents[2]


def test_every_bench_module_imports() -> None:
    names = [m.name for m in pkgutil.iter_modules(bench.__path__)]
    assert "api_load" in names and "permissions" in names
    for name in names:
        importlib.import_module(f"bench.{name}")


def test_the_bench_command_answers_help() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "--only" in done.stdout


def test_a_partial_run_keeps_the_full_runs_machine_and_names_its_own() -> None:
    from bench.__main__ import merge_partial
    from bench.report import render_table

    full = {"machine": {"date": "2026-12-01", "cores": 2, "cpu": "EPYC", "python": "3.11",
                        "model": "m", "backend": "embedded"}, "mode": "full", "seconds": 1}
    partial = {"machine": {**full["machine"], "date": "2026-12-07", "cpu": "Xeon",
                           "embedding": "openvino fp32"}, "mode": "quick", "seconds": 2}
    once = merge_partial(full, partial, ["memory"])
    twice = merge_partial(once, partial, ["memory", "api"])
    assert twice["machine"] == full["machine"] and twice["mode"] == "full"
    assert [r["parts"] for r in twice["remeasured"]] == [["memory", "api"]]
    header = render_table(twice).splitlines()[0]
    assert header.startswith("Measured 2026-12-01 on 2 cores (EPYC)")
    assert "`--only memory api --quick`: 2026-12-07 on Xeon (openvino fp32)" in header
