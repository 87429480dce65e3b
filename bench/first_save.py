"""The first save after `freshrag watch` prints its ready line, until `/search` returns it: a fresh
watcher each trial (the model and parser load before "ready", not on the first change)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.api_load import free_port, wait_ready
from bench.common import dist, write
from bench.freshness import PAGE, until
from bench.freshness_events import BIN, _started, _wait_log


def run(trials: int, record: str = "auto") -> dict[str, Any]:
    samples, ready_s = [], []
    with tempfile.TemporaryDirectory() as t, ExitStack() as outer:
        tmp = Path(t)
        docs = tmp / "docs"
        write(docs / "status.md", PAGE.format(token="initial"))
        write(docs / "notes.txt", "Plain notes, so the text partitioner is needed too.\n")
        cfg = tmp / "freshrag.toml"
        cfg.write_text(f'home = "{tmp / "home"}"\n[[sources]]\nname = "docs"\ntype = "folder"\n'
                       f'path = "{docs}"\n')
        env = {**os.environ, "FRESHRAG_CONFIG": str(cfg), "PREFECT_HOME": str(tmp / "prefect"),
               "HF_HUB_OFFLINE": "1"}
        env.pop("PREFECT_API_URL", None)  # a laptop: no Prefect API, --record auto records nothing
        port = free_port()
        api, _ = _started(outer, tmp, "serve", [str(BIN / "freshrag"), "serve", "--port",
                                                str(port)], env)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, api)
        http = outer.enter_context(httpx.Client(timeout=10))

        def found(token: str) -> bool:
            r = http.post(url + "/search", json={"query": token, "mode": "keyword", "k": 3})
            return r.status_code == 200 and any(token in h["text"] for h in r.json()["hits"])

        for n in range(trials):
            with ExitStack() as stack:
                started = time.perf_counter()
                argv = [str(BIN / "freshrag"), "watch", "--record", record]
                watch, log = _started(stack, tmp, f"watch{n}", argv, env)
                _wait_log(log, "; ready", watch, 300)
                ready_s.append(time.perf_counter() - started)
                token = f"zq{uuid.uuid4().hex[:10]}"
                start = time.perf_counter()
                write(docs / f"new{n}.md", PAGE.format(token=token))
                until(lambda token=token: found(token), timeout=120, every=0.02)
                samples.append(time.perf_counter() - start)
    return {"first_save_after_ready_s": {**dist(samples),
                                         "start_to_ready_p50_s": round(dist(ready_s)["p50"], 2)}}


if __name__ == "__main__":  # python -m bench.first_save [TRIALS]
    import json

    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 3,
                         sys.argv[2] if len(sys.argv) > 2 else "task"), indent=2))
