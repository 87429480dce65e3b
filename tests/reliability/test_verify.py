"""`freshrag verify`: each kind of drift is found, `--repair` fixes it, on folders, SQL tables
and both index backends."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from freshrag.config import SourceConfig
from freshrag.engine import Engine
from freshrag.model import Record
from freshrag.verify import Verifier
from tests.conftest import folder_settings
from tests.corpus import markdown_doc
from tests.reliability.conftest import cli, verify_json, write
from tests.sql.conftest import FakeEmbedder

GHOST = "00000000-0000-0000-0000-000000000002"


def corpus(root: Path, n: int = 6) -> None:
    for i in range(n):
        write(root / f"d{i}.md", markdown_doc(i, sections=2, paragraphs=2, words=60))


def foreign(engine: Engine, key: str, oid: str, chunk_hash: str, text: str) -> None:
    """Write an object the engine would never write (a crash of another tool, a bad import)."""
    engine.index.upsert([Record(
        id=oid, vector=[0.1] * 64, text=text, source="docs", doc_key=key, chunk_hash=chunk_hash,
        ordinal=0, title="", location="", page=None, source_modified_at=0, indexed_at=0)])


def damage(engine: Engine, root: Path) -> None:
    """One of each: missing, orphaned, stale, duplicate."""
    engine.index.delete_document("docs", "d0.md")                       # missing
    foreign(engine, "gone.md", GHOST, "x" * 64, "ghost text")            # orphaned
    hit = engine.index.get_document("docs", "d1.md")[0]
    foreign(engine, "d1.md", "00000000-0000-0000-0000-000000000003", hit.chunk_hash,
            hit.text)                                                    # duplicate
    write(root / "d2.md", markdown_doc(99, sections=1, paragraphs=1))    # stale (not synced)


def test_each_kind_of_drift_is_found_and_repaired(tmp_path: Path, fake_engine) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "docs"
    corpus(root)
    engine = fake_engine(root)
    engine.sync("docs")
    verifier = Verifier(engine)
    assert verifier.verify(["docs"]).to_json() == {
        "ok": True, "missing": [], "orphaned": [], "stale": [], "duplicates": []}
    damage(engine, root)
    drift = verifier.verify(["docs"])
    assert not drift.ok
    assert [i["key"] for i in drift.missing] == ["d0.md"]
    assert drift.orphaned == [{"source": "docs", "key": "gone.md", "chunks": 1}]
    assert [i["key"] for i in drift.duplicates] == ["d1.md"]
    assert [(i["key"], i["reason"]) for i in drift.stale] == [
        ("d2.md", "the source changed since the last sync")]
    repaired = verifier.repair(drift)
    assert sorted((i["kind"], i["key"]) for i in repaired) == [
        ("duplicates", "d1.md"), ("missing", "d0.md"), ("orphaned", "gone.md"),
        ("stale", "d2.md")]
    actions = {i["key"]: i["action"] for i in repaired}
    assert actions["gone.md"] == "deleted 1 object"
    assert actions["d1.md"] == "deleted 1 object, re-indexed"
    assert actions["d0.md"] == actions["d2.md"] == "re-indexed"
    assert verifier.verify(["docs"]).ok
    # the repair replayed the engine on exactly the affected documents
    state = engine.ledger.source_state("docs").last_report or {}
    assert state["documents"]["added"] + state["documents"]["updated"] <= 3
    assert engine.sync("docs").written == 0


def test_stale_chunk_of_an_unchanged_file_and_ledger_loss(tmp_path: Path, fake_engine) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "docs"
    corpus(root, 3)
    engine = fake_engine(root)
    engine.sync("docs")
    old = engine.index.get_document("docs", "d1.md")[0]
    # an object that follows the id scheme but for content the file no longer has
    from freshrag.model import chunk_id

    foreign(engine, "d1.md", chunk_id("docs", "d1.md", "f" * 64, 0), "f" * 64, old.text)
    drift = Verifier(engine).verify(["docs"])
    assert [(i["key"], i["stale_chunks"], i["reason"]) for i in drift.stale] == [
        ("d1.md", 1, "the index differs from the ledger")]
    assert not drift.duplicates
    Verifier(engine).repair(drift)
    assert Verifier(engine).verify(["docs"]).ok
    # the ledger is a cache: without it verify re-reads the files and still agrees
    engine.ledger.drop_source("docs")
    assert Verifier(engine).verify(["docs"]).ok
    assert Verifier(engine, deep=True).verify(["docs"]).ok


def test_cli_json_exit_codes_and_repair(tmp_path: Path) -> None:
    root, home = tmp_path / "docs", tmp_path / "home"
    corpus(root, 4)
    assert cli("sync", "--folder", str(root), "--home", str(home), cwd=tmp_path).returncode == 0
    assert verify_json(home, root)["ok"]
    (root / "d3.md").unlink()
    write(root / "new.md", "# New\n\nA brand new note about kestrels.\n")
    result = verify_json(home, root)
    assert [i["key"] for i in result["orphaned"]] == ["d3.md"]
    assert [i["key"] for i in result["missing"]] == ["new.md"]
    assert set(result) == {"ok", "missing", "orphaned", "stale", "duplicates"}
    fixed = cli("verify", "--folder", str(root), "--home", str(home), "--repair", "--json",
                cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    done = json.loads(fixed.stdout)
    assert done["ok"] and sorted((i["kind"], i["key"]) for i in done["repaired"]) == [
        ("missing", "new.md"), ("orphaned", "d3.md")]
    assert verify_json(home, root)["ok"]
    bad = cli("verify", "nosuch", "--home", str(home), cwd=tmp_path)
    assert bad.returncode == 2 and "unknown source" in bad.stderr


def test_sql_source(tmp_path: Path) -> None:
    db = tmp_path / "crm.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE tickets (id INTEGER PRIMARY KEY, body TEXT, updated_at REAL)")
    con.executemany("INSERT INTO tickets VALUES (?, ?, ?)",
                    [(i, f"ticket {i} about the walrus{i} printer", 1.0 + i) for i in range(20)])
    con.commit()
    settings = folder_settings(tmp_path / "home", tmp_path)
    settings.sources = [SourceConfig(name="crm", type="sql", url=f"sqlite:///{db}",
                                     table="tickets", key="id", text="{body}",
                                     cursor="updated_at")]
    engine = Engine(settings, embedder=FakeEmbedder())
    try:
        engine.sync("crm")
        verifier = Verifier(engine)
        assert verifier.verify(["crm"]).ok
        # a hard delete the poll cannot see, a row inserted behind the cursor, a lost document
        con.execute("DELETE FROM tickets WHERE id = 3")
        con.execute("INSERT INTO tickets VALUES (100, 'late row about otters', 0.5)")
        con.commit()
        engine.index.delete_document("crm", "7")
        drift = verifier.verify(["crm"])
        assert [i["key"] for i in drift.orphaned] == ["3"]
        assert sorted(i["key"] for i in drift.missing) == ["100", "7"]
        verifier.repair(drift)
        assert verifier.verify(["crm"]).ok
        assert set(engine.index.documents("crm")) == {str(i) for i in range(20) if i != 3} | {
            "100"}
    finally:
        engine.close()
        con.close()


def test_new_document_written_then_crash_then_deleted_leaves_no_orphan(
        tmp_path: Path, fake_engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The window the kill loop found: a new file's chunks written, the process killed before
    its ledger row, the file deleted before the next sync. Only the intent remembers it."""
    root = tmp_path / "docs"
    corpus(root, 2)
    engine = fake_engine(root)
    engine.sync("docs")
    write(root / "new.md", "# New\n\nThe gannet survey started.\n")

    def killed(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt  # stands in for SIGKILL right after the index write

    monkeypatch.setattr(engine.ledger, "put_many", killed)
    with pytest.raises(KeyboardInterrupt):
        engine.sync("docs")
    monkeypatch.undo()
    assert "new.md" in engine.index.documents("docs")
    (root / "new.md").unlink()
    report = engine.sync("docs")
    assert report.deleted == 1
    assert "new.md" not in engine.index.documents("docs")
    assert engine.ledger.intents("docs") == []
    assert Verifier(engine).verify(["docs"]).ok
