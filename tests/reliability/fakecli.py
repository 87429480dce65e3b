"""`python -m tests.reliability.fakecli ARGS`: the freshrag CLI with the fake embedder (and, with
FRESHRAG_TEST_BATCH_DOCS, small write batches: more write windows for a kill to land in)."""

from __future__ import annotations

import os

import freshrag.embed
import freshrag.engine
from freshrag import cli
from tests.sql.conftest import FakeEmbedder


def _fake(*_args: object, **_kw: object) -> FakeEmbedder:
    return FakeEmbedder()


if __name__ == "__main__":
    freshrag.engine.make_embedder = _fake  # type: ignore[assignment]
    freshrag.embed.make_embedder = _fake  # type: ignore[assignment]
    if os.environ.get("FRESHRAG_TEST_BATCH_DOCS"):
        freshrag.engine.BATCH_DOCS = int(os.environ["FRESHRAG_TEST_BATCH_DOCS"])
    cli.main()
