"""Shared bench plumbing: machine header, temp engines, stage timers, percentiles."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from freshrag.config import SourceConfig, load_settings
from freshrag.embed import SentenceTransformerEmbedder
from freshrag.engine import Engine


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
            "model": embedder.model_id, "backend": "embedded (LanceDB)",
            "date": time.strftime("%Y-%m-%d")}


def engine_for(home: Path, folder: Path, embedder: Any, name: str = "docs") -> Engine:
    settings = load_settings(config=None, home=home)
    settings.sources = [SourceConfig(name=name, type="folder", path=str(folder))]
    return Engine(settings, embedder=embedder)


def dist(samples: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of seconds (or ms) samples, with the count."""
    s = sorted(samples)

    def q(p: float) -> float:
        return s[min(len(s) - 1, int(round(p * (len(s) - 1))))]

    return {"p50": q(0.5), "p95": q(0.95), "p99": q(0.99), "max": s[-1], "n": len(s),
            "mean": statistics.fmean(s)}


class StageTimer:
    """Wraps callables to add up the wall time spent in each named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start
        return timed

    def patch(self, obj: Any, attr: str, stage: str) -> None:
        setattr(obj, attr, self.wrap(stage, getattr(obj, attr)))


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
