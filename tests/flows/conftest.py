"""Fixtures for flow and watcher tests: a Prefect test harness, a folder source, its config."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def write_config(tmp: Path, sources: dict[str, Path]) -> Path:
    """A freshrag.toml with one folder source per entry and the home under `tmp`."""
    lines = [f'home = "{tmp / "home"}"', ""]
    for name, path in sources.items():
        lines += ["[[sources]]", f'name = "{name}"', 'type = "folder"', f'path = "{path}"', ""]
    cfg = tmp / "freshrag.toml"
    cfg.write_text("\n".join(lines), encoding="utf-8")
    return cfg


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    return root


@pytest.fixture()
def config(tmp_path: Path, folder: Path) -> Path:
    return write_config(tmp_path, {"docs": folder})


@pytest.fixture(autouse=True)
def _close_engines() -> Iterator[None]:
    yield
    from flows.engines import close_all

    close_all()
