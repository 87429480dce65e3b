"""API fixtures: the real model (once per session), a synced folder, an app and its client."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from freshrag.api import create_app
from freshrag.api.settings import ApiSettings
from freshrag.config import Settings, SourceConfig, load_settings
from freshrag.embed import SentenceTransformerEmbedder
from freshrag.engine import Engine

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DOCS = {
    "policies/travel.md": "# Travel policy\n\nBook flights through the travel desk at least two "
                          "weeks ahead. Economy class for trips under six hours. Keep receipts "
                          "for hotel and meals; reimbursement takes ten working days.\n",
    "policies/security.md": "# Security policy\n\nReport a lost laptop or a phishing email to the "
                            "security team within one hour. Passwords are at least sixteen "
                            "characters and never shared.\n",
    "guides/onboarding.md": "# Onboarding\n\nNew engineers get a laptop on day one, pair with a "
                            "buddy for two weeks and ship a small change in the first week.\n",
    "notes.txt": "The cafeteria serves lunch from noon to two. Pasta on Tuesdays.\n",
}


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real all-MiniLM-L6-v2, loaded once for the session."""
    model = SentenceTransformerEmbedder()
    model.embed(["warm up"])
    return model


def write_docs(folder: Path, docs: dict[str, str] = DOCS) -> None:
    for key, text in docs.items():
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def settings_for(home: Path, folder: Path, api_key: str = "") -> Settings:
    settings = load_settings(config=None, home=home)
    settings.sources = [SourceConfig(name="docs", type="folder", path=str(folder))]
    settings.api_key = api_key
    return settings


@pytest.fixture
def make_client(tmp_path: Path, embedder: SentenceTransformerEmbedder
                ) -> Iterator[Callable[..., tuple[TestClient, Engine, Path]]]:
    """A synced folder, an Engine on it and a TestClient of the app around that engine."""
    opened: list[tuple[TestClient, Engine]] = []

    def make(api_key: str = "", docs: dict[str, str] = DOCS, sync: bool = True,
             **api: Any) -> tuple[TestClient, Engine, Path]:
        folder = tmp_path / f"folder{len(opened)}"
        folder.mkdir()
        write_docs(folder, docs)
        engine = Engine(settings_for(tmp_path / f"home{len(opened)}", folder, api_key),
                        embedder=embedder)
        if sync:
            engine.sync("docs")
        client = TestClient(create_app(engine.settings, engine=engine, api=ApiSettings(**api)),
                            raise_server_exceptions=False)
        client.__enter__()
        opened.append((client, engine))
        return client, engine, folder

    yield make
    for client, engine in opened:
        client.__exit__(None, None, None)
        engine.close()
