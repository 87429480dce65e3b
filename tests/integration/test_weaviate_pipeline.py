"""The whole folder path through Engine with index.url on the loopback Weaviate fake."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import freshrag.engine
from freshrag.embed import SentenceTransformerEmbedder
from freshrag.engine import Engine
from freshrag.index import IndexMisconfigured, IndexUnavailable
from freshrag.index.weaviate import WeaviateIndex
from freshrag.model import Filters, Mode
from freshrag.retry import retry
from tests.conftest import folder_settings
from tests.corpus import markdown_doc
from tests.fakes.weaviate_fake import FakeWeaviate, Limits


@pytest.fixture
def engine(tmp_path: Path, fake: FakeWeaviate, embedder: SentenceTransformerEmbedder,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    # The engine's backoff, without the waiting.
    monkeypatch.setattr(freshrag.engine, "retry",
                        functools.partial(retry, sleep=lambda _s: None))
    settings = folder_settings(tmp_path / "home", tmp_path / "docs")
    settings.index.url = fake.url
    settings.index.grpc_port = fake.grpc_port
    settings.index.collection = "Pipeline"
    settings.index.timeout_s = 5
    eng = Engine(settings, embedder=embedder)
    yield eng
    eng.close()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def top(engine: Engine, query: str, **kw: Any) -> str:
    hits = engine.search(query, k=3, **kw)
    assert hits, f"no hits for {query!r}"
    return hits[0].doc_key


def test_sync_edit_rename_delete_search(engine: Engine, fake: FakeWeaviate,
                                        tmp_path: Path) -> None:
    root = tmp_path / "docs"
    for i in range(5):
        write(root / f"team/d{i}.md", markdown_doc(i, sections=2, paragraphs=2)
              + f"\nThe unique marker is walrus{i}lagoon.\n")
    write(root / "notes.txt", "The harbor lighthouse guides ships into port at night.\n")

    first = engine.sync("docs")
    assert (first.added, first.failed) == (6, 0), first.errors
    assert isinstance(engine.index, WeaviateIndex) and engine.index.dim == 384
    objects = fake.objects("Pipeline")
    assert len(objects) == first.written > 6
    assert {len(o.vectors["default"]) for o in objects.values()} == {384}
    assert top(engine, "walrus3lagoon") == "team/d3.md"
    assert top(engine, "lighthouse harbor ships", mode=Mode.keyword) == "notes.txt"
    assert top(engine, "lighthouse guiding vessels at night", mode=Mode.vector) == "notes.txt"
    hits = engine.search("walrus", k=10, filters=Filters(doc_key_prefix="team/"))
    assert hits and all(h.doc_key.startswith("team/") for h in hits)
    stats = engine.index.stats()["docs"]
    assert (stats.documents, stats.chunks) == (6, len(objects))

    # edit: only the changed chunk is embedded; new objects are written before stale ones go
    before = set(engine.index.ids_for("docs", "team/d1.md"))
    text = (root / "team/d1.md").read_text().replace("walrus1lagoon", "narwhal1fjord")
    write(root / "team/d1.md", text)
    fake.calls.clear()
    edit = engine.sync("docs")
    assert (edit.updated, edit.added) == (1, 0) and 1 <= edit.embedded <= 2
    methods = [m for m, _ in fake.calls if m in ("BatchObjects", "BatchDelete")]
    assert methods == ["BatchObjects", "BatchDelete"]
    after = set(engine.index.ids_for("docs", "team/d1.md"))
    assert after != before and len(after & before) >= 1
    assert top(engine, "narwhal1fjord") == "team/d1.md"
    assert "walrus1lagoon" not in " ".join(h.text for h in engine.search("walrus1lagoon", k=10))

    # rename: no model call, the old key is gone
    (root / "team/d0.md").rename(root / "team/renamed.md")
    renamed = engine.sync("docs")
    assert (renamed.renamed, renamed.embedded, renamed.deleted) == (1, 0, 0)
    assert top(engine, "walrus0lagoon") == "team/renamed.md"
    assert engine.index.ids_for("docs", "team/d0.md") == {}

    # delete
    (root / "notes.txt").unlink()
    deleted = engine.sync("docs")
    assert deleted.deleted == 1
    assert engine.index.ids_for("docs", "notes.txt") == {}
    assert "notes.txt" not in engine.index.documents("docs")
    assert not [o for o in fake.objects("Pipeline").values() if o.props["doc_key"] == "notes.txt"]

    # a second full sync is a no-op
    again = engine.sync("docs")
    assert (again.embedded, again.written, again.chunks_deleted) == (0, 0, 0)


def test_failed_write_never_advances_the_ledger(engine: Engine, fake: FakeWeaviate,
                                                tmp_path: Path) -> None:
    root = tmp_path / "docs"
    write(root / "a.md", "# A\n\nThe first document mentions the copper kettle.\n")
    assert engine.sync("docs").added == 1
    write(root / "b.md", "# B\n\nThe second document mentions the silver spoon.\n")
    fake.faults.grpc_errors = 1_000  # Weaviate down for every retry
    with pytest.raises(IndexUnavailable, match="127.0.0.1"):
        engine.sync("docs")
    assert engine.ledger.get("docs", "b.md") is None
    fake.faults.grpc_errors = 0
    recovered = engine.sync("docs")
    assert (recovered.added, recovered.failed) == (1, 0)
    assert engine.ledger.get("docs", "b.md") is not None
    assert top(engine, "silver spoon") == "b.md"


def test_a_refused_setting_stops_the_sync_at_once_without_retries(
        tmp_path: Path, embedder: SentenceTransformerEmbedder,
        monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(freshrag.engine, "retry", functools.partial(retry, sleep=slept.append))
    strict = FakeWeaviate(Limits(query_maximum_results=10)).start()
    try:
        settings = folder_settings(tmp_path / "home", tmp_path / "docs")
        settings.index.url, settings.index.grpc_port = strict.url, strict.grpc_port
        write(tmp_path / "docs/a.md", "# A\n\nThe first document mentions the copper kettle.\n")
        eng = Engine(settings, embedder=embedder)  # index.query_maximum_results: 10,000
        with pytest.raises(IndexMisconfigured, match="index.query_maximum_results"):
            eng.sync("docs")
        refused = [s for s in strict.grpc_calls("Search") if s.limit > 10]
        assert slept == [] and len(refused) == 1  # asked once, never retried
        assert eng.ledger.get("docs", "a.md") is None
        eng.close()
        settings.index.query_maximum_results = 10
        eng = Engine(settings, embedder=embedder)
        assert eng.sync("docs").added == 1
        eng.close()
    finally:
        strict.stop()
