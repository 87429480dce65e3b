"""Peak RSS of `freshrag watch`: idle after start, and after a burst of new files."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write
from bench.freshness import until
from freshrag.ledger import Ledger
from tests.corpus import markdown_doc


def rss_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            name, value = line.split(":", 1)
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    return fields


def run(burst: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        docs, home = tmp / "docs", tmp / "home"
        write(docs / "seed.md", "# Seed\n\nThe first document.\n")
        cfg = tmp / "freshrag.toml"
        cfg.write_text(f'home = "{home}"\n[[sources]]\nname = "docs"\ntype = "folder"\n'
                       f'path = "{docs}"\n')
        env = {**os.environ, "FRESHRAG_CONFIG": str(cfg), "PREFECT_HOME": str(tmp / "prefect")}
        proc = subprocess.Popen([sys.executable, "-m", "freshrag.cli", "watch", "docs"],
                                cwd=tmp, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            ledger_path = home / "ledger.db"
            until(lambda: ledger_path.exists() and "seed.md" in Ledger(
                f"sqlite:///{ledger_path}").fingerprints("docs"), timeout=180, every=0.5)
            time.sleep(3)
            idle = rss_mb(proc.pid)
            start = time.perf_counter()
            for i in range(burst):
                write(docs / f"burst/b{i:04d}.md", markdown_doc(i, sections=1, paragraphs=1,
                                                                words=60))
            ledger = Ledger(f"sqlite:///{ledger_path}")
            until(lambda: len(ledger.fingerprints("docs")) >= burst + 1, timeout=900,
                  every=0.5)
            took = time.perf_counter() - start
            peak = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(60)
    return {"burst": burst, "idle_mb": idle["VmRSS"], "idle_peak_mb": idle["VmHWM"],
            "burst_mb": peak["VmHWM"], "burst_indexed_s": round(took, 1)}
