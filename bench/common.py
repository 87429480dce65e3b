"""Shared bench plumbing: the installed `freshrag` command on a temp project, machine header,
percentiles."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from freshrag.embed import SentenceTransformerEmbedder

# The console script pip installed beside this Python: the bench drives the product's own
# entry points (`freshrag sync --json`, `watch`, `serve`), never an engine it wires itself.
FRESHRAG = Path(sys.executable).parent / "freshrag"


def machine(embedder: SentenceTransformerEmbedder) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "model": embedder.model_id, "embedding": default_embedding(),
            "backend": "embedded (LanceDB)",
            "date": time.strftime("%Y-%m-%d")}


def folder_config(tmp: Path, folder: Path, name: str = "docs",
                  model: dict[str, str] | None = None) -> Path:
    """`tmp/freshrag.toml`: one folder source, its home in `tmp/home`; `model`: [model] keys."""
    config = tmp / "freshrag.toml"
    keys = "".join(f'{k} = "{v}"\n' for k, v in (model or {}).items())
    config.write_text(f'home = "{tmp / "home"}"\n' + (f"[model]\n{keys}" if keys else "")
                      + f'[[sources]]\nname = "{name}"\ntype = "folder"\npath = "{folder}"\n')
    return config


def default_embedding() -> str:
    """The embedding backend and precision a default freshrag.toml runs on this machine."""
    from freshrag.config import ModelConfig
    from freshrag.embed import make_embedder

    embedder = make_embedder(ModelConfig())
    return f"{getattr(embedder, 'backend', '?')} {getattr(embedder, 'precision', '?')}"


def command_env(config: Path) -> dict[str, str]:
    """A user's environment for `config`: none of the caller's FRESHRAG_* settings, the model
    offline, Prefect's state beside the config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHRAG_")}
    env.update({"FRESHRAG_CONFIG": str(config), "HF_HUB_OFFLINE": "1",
                "PREFECT_HOME": str(config.parent / "prefect-home")})
    return env


def sync_json(config: Path, *sources: str) -> dict[str, Any]:
    """`freshrag sync [SOURCES] --json` with `config`: its one JSON report."""
    done = subprocess.run([str(FRESHRAG), "sync", *sources, "--json"], cwd=config.parent,
                          env=command_env(config), capture_output=True, text=True, timeout=7200)
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"freshrag sync exited {done.returncode}: {done.stderr[-2000:]}") \
            from exc
    if done.returncode != 0:
        raise RuntimeError(f"freshrag sync exited {done.returncode}: {report['errors'][:3]}")
    return report


def launch(config: Path, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.Popen[bytes]:
    """A long-running `freshrag ARGS` (watch, serve) with `config` (in `env`, default
    command_env's); its output is dropped."""
    return subprocess.Popen([str(FRESHRAG), *args], cwd=config.parent,
                            env=env or command_env(config), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def alive(proc: subprocess.Popen[bytes], what: str) -> bool:
    """True while `proc` runs; raises, naming `what` and its exit code, once it has exited."""
    if proc.poll() is not None:
        raise RuntimeError(f"{what} exited {proc.returncode}")
    return True


def stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def dist(samples: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of seconds (or ms) samples, with the count."""
    s = sorted(samples)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(round(p * (len(s) - 1))))]

    return {"p50": q(0.5), "p95": q(0.95), "p99": q(0.99), "max": s[-1], "n": len(s),
            "mean": statistics.fmean(s)}


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
