"""Shared fixtures: the real embedding model (loaded once) and engines on temp folders."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from freshrag.config import Settings, SourceConfig, load_settings
from freshrag.embed import SentenceTransformerEmbedder
from freshrag.engine import Engine

if TYPE_CHECKING:
    from tests.fakes.weaviate_fake import FakeWeaviate

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real all-MiniLM-L6-v2, shared by every test of the session."""
    model = SentenceTransformerEmbedder()
    model.embed(["warm up"])
    return model


def folder_settings(home: Path, folder: Path, name: str = "docs", **source: object) -> Settings:
    settings = load_settings(config=None, home=home)
    settings.sources = [SourceConfig(name=name, type="folder", path=str(folder), **source)]
    return settings


@pytest.fixture
def make_engine(tmp_path: Path, embedder: SentenceTransformerEmbedder
                ) -> Iterator[Callable[..., Engine]]:
    """Build an Engine over a folder with a fresh home under tmp_path."""
    engines: list[Engine] = []

    def make(folder: Path, name: str = "docs", home: Path | None = None,
             **source: object) -> Engine:
        engine = Engine(folder_settings(home or tmp_path / "home", folder, name, **source),
                        embedder=embedder)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def fake() -> Iterator[FakeWeaviate]:
    """A loopback Weaviate (REST + gRPC test double) on random ports."""
    from tests.fakes.weaviate_fake import FakeWeaviate

    f = FakeWeaviate().start()
    yield f
    f.stop()
