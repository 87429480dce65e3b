"""Fixtures for the reliability tests: engines with a fast deterministic embedder, the CLI in a
subprocess with that embedder, and a corpus writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from freshrag.engine import Engine
from tests.conftest import folder_settings
from tests.integration.test_pipeline import write
from tests.sql.conftest import FakeEmbedder

REPO = Path(__file__).resolve().parents[2]
__all__ = ["REPO", "cli", "cli_argv", "cli_env", "verify_json", "write"]


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), **extra}
    env.pop("FRESHRAG_CONFIG", None)
    return env


def cli(*args: str, cwd: Path, real_model: bool = False, timeout: float = 300,
        **env: str) -> subprocess.CompletedProcess[str]:
    """Run `freshrag ARGS` to completion; with the fake embedder unless real_model."""
    return subprocess.run(cli_argv(*args, real_model=real_model), cwd=cwd, capture_output=True,
                          text=True, env=cli_env(**env), timeout=timeout)


def cli_argv(*args: str, real_model: bool = False) -> list[str]:
    module = "freshrag.cli" if real_model else "tests.reliability.fakecli"
    return [sys.executable, "-m", module, *args]


def verify_json(home: Path, folder: Path, **kw: Any) -> dict[str, Any]:
    done = cli("verify", "--folder", str(folder), "--home", str(home), "--json", cwd=folder.parent,
               **kw)
    assert done.returncode in (0, 1), done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert (done.returncode == 0) == result["ok"]
    return result


@pytest.fixture
def fake_engine(tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    """Build an Engine over a folder with the fake embedder and a home under tmp_path."""
    engines: list[Engine] = []

    def make(folder: Path, home: Path | None = None, name: str = "docs", **source: Any
             ) -> Engine:
        engine = Engine(folder_settings(home or tmp_path / "home", folder, name, **source),
                        embedder=FakeEmbedder())
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()
