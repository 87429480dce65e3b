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
