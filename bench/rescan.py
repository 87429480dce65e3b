"""Rescan cost: a no-change sync of 10,000 files vs `find -printf` over the same tree."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import engine_for
from freshrag.ledger import DocState
from freshrag.model import Fingerprint


def best_of(n: int, fn: Any) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(embedder: Any, files: int = 10_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "docs"
        for i in range(files):
            d = root / f"dir{i // 500:02d}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i:05d}.txt").write_text(f"note {i}\n")
        engine = engine_for(Path(tmp) / "home", root, embedder)
        # The ledger as a completed sync leaves it (fingerprints are all a rescan reads);
        # parsing and embedding 10,000 files first would only make the bench slow.
        docs = []
        for path in root.rglob("*.txt"):
            st = path.stat()
            docs.append(DocState("docs", str(path.relative_to(root)),
                                 Fingerprint(st.st_mtime_ns, st.st_size, st.st_ino),
                                 "0" * 64, [], st.st_mtime))
        engine.ledger.put_many(docs)
        check = engine.sync("docs")
        assert check.added == check.updated == check.deleted == 0, check.to_json()
        sync_s = best_of(3, lambda: engine.sync("docs"))
        find_s = best_of(3, lambda: subprocess.run(
            ["find", str(root), "-printf", "%T@ %s\n"], stdout=subprocess.DEVNULL, check=True))
        engine.close()
    return {"files": files, "sync_s": round(sync_s, 4), "find_s": round(find_s, 4),
            "ratio": round(sync_s / find_s, 2)}
