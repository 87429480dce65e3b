"""Canary write-to-searchable latency under `freshrag watch` on a folder source, read from the
watcher's own /metrics (freshrag_canary_last_latency_seconds at each new success), beside the
same watcher's change-to-searchable histogram for user saves made meanwhile."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.api_load import free_port
from bench.common import dist, write
from bench.freshness import PAGE
from bench.freshness_events import BIN, _wait_log


def _scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.labels.get("source") == "docs" and not s.labels.get("le"):
                out[s.name + ("" if "op" not in s.labels else f":{s.labels['op']}")] = s.value
    return out


def run(samples: int, docs: int = 20, interval: float = 1.0) -> dict[str, Any]:
    """`samples` canaries found (one every `interval` s), a user save every other second."""
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        folder = tmp / "docs"
        for n in range(docs):
            write(folder / f"page{n}.md", PAGE.format(token=f"initial{n}"))
        cfg = tmp / "freshrag.toml"
        cfg.write_text(f'home = "{tmp / "home"}"\n[[sources]]\nname = "docs"\ntype = "folder"\n'
                       f'path = "{folder}"\ncanary = true\ncanary_interval = {interval}\n')
        port = free_port()
        log_path = tmp / "watch.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        env.pop("PREFECT_API_URL", None)
        with log_path.open("wb") as log:
            proc = subprocess.Popen([str(BIN / "freshrag"), "watch", "--record", "off",
                                     "--metrics-port", str(port), "--config", str(cfg)],
                                    cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_log(log_path, "; ready", proc, 300)
            load_before = os.getloadavg()
            latencies: list[float] = []
            last_success, saves, next_save = 0.0, 0, time.monotonic()
            deadline = time.monotonic() + samples * interval * 4 + 60
            while len(latencies) < samples and time.monotonic() < deadline:
                if time.monotonic() >= next_save:  # a user's save between canaries
                    write(folder / "page0.md", PAGE.format(token=f"save{saves}"))
                    saves += 1
                    next_save = time.monotonic() + 2 * interval
                got = _scrape(port)
                success = got.get("freshrag_canary_last_success_timestamp_seconds", 0.0)
                if success > last_success:
                    last_success = success
                    latencies.append(got["freshrag_canary_last_latency_seconds"])
                time.sleep(0.05)
            final = _scrape(port)
            load_after = os.getloadavg()
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    changes = final.get("freshrag_change_to_searchable_seconds_count:update", 0.0)
    change_mean = (final.get("freshrag_change_to_searchable_seconds_sum:update", 0.0)
                   / changes) if changes else None
    d = dist(latencies) if latencies else {}
    return {"canary_latency_s": d, "interval_s": interval, "docs": docs,
            "user_saves_updated": int(changes), "user_change_to_searchable_mean_s": change_mean,
            "canary_over_change_mean": (d["mean"] / change_mean) if d and change_mean else None,
            "missed": final.get("freshrag_canary_missed_total", 0.0),
            "loadavg_1m": [round(load_before[0], 2), round(load_after[0], 2)]}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 30), indent=2))
