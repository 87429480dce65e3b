"""The ledger on the machine's real Postgres: the same engine behaviour as on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from freshrag.engine import Engine
from freshrag.ledger import DocState, Ledger
from freshrag.model import Fingerprint
from tests.conftest import folder_settings
from tests.pg import fresh_postgres_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from fresh_postgres_database()


def test_ledger_round_trips_on_postgres(pg_url: str) -> None:
    ledger = Ledger(pg_url)
    doc = DocState("docs", "a/b.md", Fingerprint(1, 2, 3), "h" * 64, ["c1", "c2"], 10.0)
    ledger.put(doc)
    ledger.put(doc)  # idempotent
    assert ledger.fingerprints("docs") == {"a/b.md": Fingerprint(1, 2, 3)}
    assert ledger.get("docs", "a/b.md").chunk_hashes == ["c1", "c2"]  # type: ignore[union-attr]
    ledger.cache_vectors("m", {"x": [0.5, 0.25]})
    ledger.cache_vectors("m", {"x": [0.5, 0.25]})
    assert ledger.cached_vectors("m", ["x", "y"]) == {"x": [0.5, 0.25]}
    ledger.set_source_state("docs", cursor="42", watermark=5.0)
    assert ledger.source_state("docs").cursor == "42"
    ledger.record_error("docs", "bad.txt", "empty file")
    assert ledger.errors("docs")[0]["error"] == "empty file"
    ledger.remove("docs", "a/b.md")
    assert ledger.fingerprints("docs") == {}
    ledger.close()


def test_sync_with_a_postgres_ledger(pg_url: str, tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# Alpha\n\nThe puffin colony grew this spring.\n")
    settings = folder_settings(tmp_path / "home", root)
    settings.ledger_url = pg_url
    engine = Engine(settings, embedder=embedder)
    try:
        assert engine.sync("docs").added == 1
        assert engine.sync("docs").written == 0
        assert engine.search("puffin colony", k=1)[0].doc_key == "a.md"
    finally:
        engine.close()


def test_many_processes_opening_a_new_ledger_at_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    code = ("import sys; from freshrag.ledger import Ledger; "
            "Ledger(sys.argv[1]).fingerprints('docs')")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE,
                              text=True) for _ in range(10)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
