"""Fixtures for end-to-end tests: a user's project folder driven through the installed command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.userpath import FRESHRAG, Project, make_project


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """A project folder with freshrag.toml and docs/, commands run from another folder."""
    assert FRESHRAG.is_file(), f"{FRESHRAG} missing: install with `bash scripts/setup.sh`"
    yield from make_project(tmp_path)


@pytest.fixture(scope="session", autouse=True)
def exported_model() -> None:
    """The default backend's one-time ONNX export, made once per test session into the shared
    cache every project's home uses (~/.cache/freshrag/models): no test's wait bounds pay for
    it (tests/unit/test_embed_onnx.py tests the export itself)."""
    from freshrag.config import ModelConfig
    from freshrag.embed import make_embedder, prepare

    prepare(make_embedder(ModelConfig()))
