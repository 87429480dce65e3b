"""`python -m tests.reliability.fakecli ARGS`: the freshrag CLI with the fake embedder."""

from __future__ import annotations

import freshrag.engine
from freshrag import cli
from tests.sql.conftest import FakeEmbedder


def _fake(*_args: object, **_kw: object) -> FakeEmbedder:
    return FakeEmbedder()


if __name__ == "__main__":
    freshrag.engine.SentenceTransformerEmbedder = _fake  # type: ignore[assignment,misc]
    cli.main()
