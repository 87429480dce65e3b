"""Rescan cost: a no-change `freshrag sync --json` over a tree of small files (its own report's
seconds, best of 3) vs `find -printf` over the same tree."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import folder_config, sync_json


def best_of(n: int, fn: Any) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(files: int = 10_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        root = tmp / "docs"
        for i in range(files):
            d = root / f"dir{i // 500:02d}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i:05d}.txt").write_text(f"note {i}\n")
        config = folder_config(tmp, root)
        first = sync_json(config)  # the real first sync: every file parsed and embedded
        assert first["documents"]["added"] == files, first
        syncs = []
        for _ in range(3):
            report = sync_json(config)
            docs = report["documents"]
            assert docs["added"] == docs["updated"] == docs["deleted"] == 0, report
            syncs.append(report["seconds"])
        find_s = best_of(3, lambda: subprocess.run(
            ["find", str(root), "-printf", "%T@ %s\n"], stdout=subprocess.DEVNULL, check=True))
    sync_s = min(syncs)
    return {"files": files, "sync_s": round(sync_s, 4), "find_s": round(find_s, 4),
            "ratio": round(sync_s / find_s, 2), "first_sync_s": first["seconds"],
            "measured": "product: `freshrag sync --json` seconds of a sync that finds nothing "
                        "(best of 3, each a fresh process); baseline: find -printf"}
