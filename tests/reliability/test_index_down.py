"""The index goes away mid-sync: the sync retries with backoff, then stops and says so; the
ledger never runs ahead of the index; when the index is back the next sync loses nothing."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import freshrag.engine
from freshrag.engine import Engine
from freshrag.index import IndexUnavailable
from freshrag.retry import retry
from freshrag.verify import Verifier
from tests.conftest import folder_settings
from tests.corpus import markdown_doc
from tests.fakes.weaviate_fake import FakeWeaviate
from tests.reliability.conftest import cli, write
from tests.sql.conftest import FakeEmbedder


@pytest.fixture(autouse=True)
def no_backoff_wait(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(freshrag.engine, "retry",
                        functools.partial(retry, sleep=waits.append))
    return waits


def corpus(root: Path, n: int = 8, seed: int = 0) -> None:
    for i in range(n):
        write(root / f"d{i}.md", markdown_doc(seed + i, sections=2, paragraphs=1, words=50))


def edit(root: Path) -> None:
    write(root / "d1.md", "# Changed\n\nThe pelican budget was approved.\n")
    write(root / "new.md", "# New\n\nThe heron roadmap ships in spring.\n")
    (root / "d2.md").unlink()


def assert_recovers(engine: Engine, root: Path, before: dict[str, Any]) -> None:
    """After a failed sync: the ledger still says what the index held; then, index back,
    one sync converges."""
    assert engine.ledger.fingerprints("docs") == before
    report = engine.sync("docs")
    assert (report.added, report.updated, report.deleted) == (1, 1, 1)
    assert Verifier(engine).verify(["docs"]).ok
    assert set(engine.index.documents("docs")) == {p.name for p in root.iterdir()}


class Flaky:
    """Wraps an index; its writes fail while `down` (and the next `blips` writes fail)."""

    def __init__(self, inner: Any):
        self.inner, self.down, self.blips, self.failures = inner, False, 0, 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in ("upsert", "delete", "delete_document", "update_metadata"):
            return attr

        def call(*args: Any, **kw: Any) -> Any:
            if self.down or self.blips > 0:
                self.blips -= 1
                self.failures += 1
                raise IndexUnavailable("flaky index: connection refused")
            return attr(*args, **kw)
        return call


def flaky_engine(tmp_path: Path, root: Path) -> tuple[Engine, Flaky]:
    from freshrag.index.lancedb import LanceIndex

    index = Flaky(LanceIndex(tmp_path / "home" / "index"))
    engine = Engine(folder_settings(tmp_path / "home", root), index=index,  # type: ignore[arg-type]
                    embedder=FakeEmbedder())
    return engine, index


def test_brief_outage_is_ridden_out_with_backoff(tmp_path: Path, no_backoff_wait: list[float]
                                                 ) -> None:
    root = tmp_path / "docs"
    corpus(root)
    engine, index = flaky_engine(tmp_path, root)
    index.blips = 2
    report = engine.sync("docs")
    assert report.added == 8 and index.failures == 2
    assert no_backoff_wait == [0.5, 1.0]  # exponential backoff
    assert Verifier(engine).verify(["docs"]).ok
    engine.close()


def test_long_outage_stops_the_sync_and_nothing_is_lost(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    corpus(root)
    engine, index = flaky_engine(tmp_path, root)
    engine.sync("docs")
    before = engine.ledger.fingerprints("docs")
    edit(root)
    index.down = True
    with pytest.raises(IndexUnavailable):
        engine.sync("docs")
    index.down = False
    assert_recovers(engine, root, before)
    engine.close()


def test_embedded_store_broken_on_disk(tmp_path: Path) -> None:
    """Running as root, chmod does not stop writes; replacing the table's data folder with a
    file does: LanceDB's writes then fail with an OS error."""
    root = tmp_path / "docs"
    corpus(root)
    settings = folder_settings(tmp_path / "home", root)
    engine = Engine(settings, embedder=FakeEmbedder())
    engine.sync("docs")
    before = engine.ledger.fingerprints("docs")
    data = tmp_path / "home" / "index" / "chunks.lance" / "data"
    data.rename(data.with_name("data.saved"))
    data.write_text("not a folder")
    edit(root)
    with pytest.raises(IndexUnavailable, match="embedded index at .* failed: .*os error"):
        engine.sync("docs")
    data.unlink()
    data.with_name("data.saved").rename(data)
    assert_recovers(engine, root, before)
    engine.close()


def test_cli_reports_the_outage_and_exits_1(tmp_path: Path) -> None:
    root, home = tmp_path / "docs", tmp_path / "home"
    corpus(root, 3)
    assert cli("sync", "--folder", str(root), "--home", str(home), cwd=tmp_path).returncode == 0
    data = home / "index" / "chunks.lance" / "data"
    data.rename(data.with_name("data.saved"))
    data.write_text("not a folder")
    edit(root)
    down = cli("sync", "--folder", str(root), "--home", str(home), cwd=tmp_path)
    assert down.returncode == 1
    assert "index unavailable, sync stopped" in down.stderr
    assert "retrying in 0.5 s" in down.stderr and "retrying in 1.0 s" in down.stderr
    data.unlink()
    data.with_name("data.saved").rename(data)
    back = cli("sync", "--folder", str(root), "--home", str(home), "--json", cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert '"added": 1, "updated": 1, "deleted": 1' in back.stdout


@pytest.fixture
def fake() -> Iterator[FakeWeaviate]:
    f = FakeWeaviate().start()
    yield f
    f.stop()


def test_weaviate_outage_and_verify_on_weaviate(tmp_path: Path, fake: FakeWeaviate) -> None:
    root = tmp_path / "docs"
    corpus(root)
    settings = folder_settings(tmp_path / "home", root)
    settings.index.url, settings.index.grpc_port = fake.url, fake.grpc_port
    settings.index.collection, settings.index.timeout_s = "Reliability", 5
    engine = Engine(settings, embedder=FakeEmbedder())
    engine.sync("docs")
    assert Verifier(engine).verify(["docs"]).ok
    before = engine.ledger.fingerprints("docs")
    edit(root)
    fake.faults.grpc_errors = 1_000
    with pytest.raises(IndexUnavailable):
        engine.sync("docs")
    fake.faults.grpc_errors = 0
    assert_recovers(engine, root, before)
    # an object failing inside a batch is retried by the adapter, then converges
    write(root / "d3.md", "# Again\n\nThe cormorant plan changed.\n")
    engine.sync("docs")
    assert Verifier(engine).verify(["docs"]).ok
    # drift on Weaviate is found and repaired like on the embedded index
    engine.index.delete_document("docs", "d4.md")
    drift = Verifier(engine).verify(["docs"])
    assert [i["key"] for i in drift.missing] == ["d4.md"]
    Verifier(engine).repair(drift)
    assert Verifier(engine).verify(["docs"]).ok
    engine.close()
