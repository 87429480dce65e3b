"""Event-mode freshness through a real `prefect server`, with the product's entry points only:
`freshrag watch --mode events` + `python deployments/serve.py` (the served deployments, warm
engine) + `freshrag serve`; a file save until `/search` returns the new text."""

from __future__ import annotations

import os
import subprocess
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

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _wait_log(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path.name}: no {text!r}: "
                               + path.read_text(errors="replace")[-1500:])
        time.sleep(0.2)


def _started(stack: ExitStack, tmp: Path, name: str, argv: list[str],
             env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    """Start a command with its log in `tmp`; the stack stops it."""
    log_path = tmp / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    stack.callback(stop)
    return proc, log_path


def run(trials: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as t, ExitStack() as stack:
        tmp = Path(t)
        docs = tmp / "docs"
        write(docs / "status.md", PAGE.format(token="initial"))
        cfg = tmp / "freshrag.toml"
        cfg.write_text(f'home = "{tmp / "home"}"\n[[sources]]\nname = "docs"\ntype = "folder"\n'
                       f'path = "{docs}"\n')
        port = free_port()
        env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect"),
               "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "FRESHRAG_CONFIG": str(cfg),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1"}
        server, server_log = _started(
            stack, tmp, "prefect-server", [str(BIN / "prefect"), "server", "start", "--host",
                                           "127.0.0.1", "--port", str(port)], env)
        until(lambda: _healthy(port, server), timeout=180, every=0.5)
        served, served_log = _started(
            stack, tmp, "serve-py", [sys.executable, str(ROOT / "deployments" / "serve.py"),
                                     "--config", str(cfg)], env)
        _wait_log(served_log, "; ready", served, 300)
        watch, watch_log = _started(
            stack, tmp, "watch", [str(BIN / "freshrag"), "watch", "--mode", "events"], env)
        _wait_log(watch_log, "; ready", watch, 300)
        api_port = free_port()
        api, _ = _started(
            stack, tmp, "serve", [str(BIN / "freshrag"), "serve", "--port", str(api_port)], env)
        url = f"http://127.0.0.1:{api_port}"
        wait_ready(url, api)
        http = stack.enter_context(httpx.Client(timeout=10))

        def found(token: str) -> bool:
            r = http.post(url + "/search", json={"query": token, "mode": "keyword", "k": 3})
            return r.status_code == 200 and any(token in h["text"] for h in r.json()["hits"])

        until(lambda: found("initial"), timeout=180)
        samples, saved = [], []
        for _ in range(trials):
            token = f"zq{uuid.uuid4().hex[:10]}"
            start = time.perf_counter()
            saved.append(time.time())
            (docs / "status.md").write_text(PAGE.format(token=token))
            until(lambda token=token: found(token), timeout=120, every=0.02)
            samples.append(time.perf_counter() - start)
            time.sleep(0.5)  # let the run finish its bookkeeping before the next save
        reloads = served_log.read_text(errors="replace").count("engine: cold")
        phases = _phases(env["PREFECT_API_URL"], saved)
    return {"freshness_events_s": {**dist(samples), "model_reloads": reloads, **phases}}


def _phases(api: str, saved: list[float]) -> dict[str, Any]:
    """Where an event's time goes, from the server's own timestamps (medians, seconds): save →
    flow run created (watcher debounce + event + trigger + automation action), created → started
    (the runner's poll and claim), started → ended (the run)."""
    from statistics import median

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    dep = DeploymentFilter(name=DeploymentFilterName(any_=["serve-docs"]))
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs(deployment_filter=dep)
                if r.created and r.start_time and r.end_time]
    runs.sort(key=lambda r: r.created.timestamp())
    created = [r.created.timestamp() for r in runs]
    to_run = []
    for t in saved:  # the first run created after each save
        after = [c for c in created if c >= t]
        if after:
            to_run.append(after[0] - t)
    return {"phase_save_to_run_created_s": round(median(to_run), 3) if to_run else None,
            "phase_created_to_started_s": round(median(
                r.start_time.timestamp() - r.created.timestamp() for r in runs), 3) if runs
            else None,
            "phase_run_s": round(median(r.end_time.timestamp() - r.start_time.timestamp()
                                        for r in runs), 3) if runs else None}


def _healthy(port: int, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError("prefect server exited")
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":  # python -m bench.freshness_events [TRIALS]
    import json

    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 10), indent=2))
