"""A hostile corpus: every bad file is reported with its reason (sync report and status), every
good file is indexed, nothing crashes or hangs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import connectors.folder
from freshrag.engine import Engine
from freshrag.parse_worker import IsolatedParser
from freshrag.status import source_status
from freshrag.verify import Verifier
from tests import samples
from tests.conftest import folder_settings
from tests.reliability.conftest import REPO, write
from tests.sql.conftest import FakeEmbedder


def hostile(root: Path, outside: Path) -> dict[str, str]:
    """Write the corpus; returns bad file -> a word its reason must contain."""
    write(root / "good.md", "# Good\n\nThe osprey migration report is complete.\n")
    write(root / "good.txt", "Plain notes about the lynx enclosure.\n")
    write(root / "office/good.docx", samples.docx_bytes("Memo", ["The ibex budget grew."]))
    write(root / "office/bad.docx", b"PK\x03\x04 this is not a zip archive")
    write(root / "office/bad.pptx", b"PK\x03\x04\x14\x00 truncated")
    write(root / "office/bad.xlsx", b"\x00\x01garbage")
    write(root / "office/bad.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\n%%EOF garbage")
    write(root / "binary.txt", bytes(range(256)) * 4)
    write(root / "empty.md", b"")
    big = root / "huge.txt"
    big.touch()
    os.truncate(big, 200 * 1024 * 1024)  # sparse: instant, no disk used
    os.mkfifo(root / "pipe.txt")  # root reads every file: a FIFO stands in for an unreadable one
    locked = root / "locked.md"
    write(locked, "# Locked\n\nNobody may read this.\n")
    locked.chmod(0)
    os.symlink("loop.md", root / "loop.md")  # a symlink to itself
    os.symlink("..", root / "office/up")  # a folder loop
    write(outside / "secret.md", "# Secret\n\nThe vault combination lives outside the root.\n")
    os.symlink(outside / "secret.md", root / "escape.md")
    os.symlink(outside, root / "elsewhere")
    with open(os.path.join(os.fsencode(root), b"caf\xe9.md"), "wb") as fh:
        fh.write(b"# Cafe\n\nLatin-1 file name.\n")
    bad = {"office/bad.docx": "docx", "office/bad.pptx": "pptx", "office/bad.xlsx": "xlsx",
           "office/bad.pdf": "pdf", "binary.txt": "binary", "empty.md": "empty",
           "huge.txt": "max_file_mb", "pipe.txt": "FIFO"}
    if os.geteuid() != 0:
        bad["locked.md"] = "Permission denied"
    return bad


def test_hostile_corpus(tmp_path: Path) -> None:
    root, outside = tmp_path / "docs", tmp_path / "outside"
    bad = hostile(root, outside)
    engine = Engine(folder_settings(tmp_path / "home", root), embedder=FakeEmbedder())
    try:
        report = engine.sync("docs")
        reasons = {e["key"]: e["error"] for e in report.errors}
        assert set(reasons) == set(bad), reasons
        for key, word in bad.items():
            assert word.lower() in reasons[key].lower(), (key, reasons[key])
        indexed = set(engine.index.documents("docs"))
        # a name that is not UTF-8 is indexed under its percent-escaped key
        good = {"good.md", "good.txt", "office/good.docx", "caf%E9.md"}
        assert indexed == good | ({"locked.md"} if os.geteuid() == 0 else set())
        status = source_status(engine)[0]
        assert {e["key"] for e in status["errors"]} == set(bad)
        assert Verifier(engine).verify(["docs"]).ok  # bad files are not drift, only reported
        # a second sync is quiet about files already indexed and keeps reporting the bad ones
        again = engine.sync("docs")
        assert again.written == 0
        # following symlinks is opt-in; the loops still end
        followed = Engine(folder_settings(tmp_path / "home2", root, follow_symlinks=True),
                          embedder=FakeEmbedder())
        followed.sync("docs")
        assert {"escape.md", "elsewhere/secret.md"} <= set(followed.index.documents("docs"))
        followed.close()
    finally:
        engine.close()


def test_file_deleted_between_scan_and_read(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    write(root / "a.md", "# A\n\nAlpha text.\n")
    write(root / "b.md", "# B\n\nBravo text.\n")
    engine = Engine(folder_settings(tmp_path / "home", root), embedder=FakeEmbedder())
    engine.sync("docs")
    write(root / "a.md", "# A\n\nAlpha text, edited.\n")
    write(root / "c.md", "# C\n\nCharlie text.\n")
    src = engine.source("docs")
    real_read = src.read

    def read_after_delete(key: str) -> object:
        (root / key).unlink()  # gone after the scan saw it
        return real_read(key)

    src.read = read_after_delete  # type: ignore[method-assign]
    report = engine.sync("docs")
    assert report.failed == 0 and report.deleted == 1  # a.md was indexed: now deleted
    src.read = real_read  # type: ignore[method-assign]
    assert set(engine.index.documents("docs")) == {"b.md"}
    assert Verifier(engine).verify(["docs"]).ok
    engine.close()


def test_file_changing_while_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "docs"
    path = root / "busy.md"
    write(path, "# Busy\n\nFirst version.\n")
    engine = Engine(folder_settings(tmp_path / "home", root), embedder=FakeEmbedder())
    real = connectors.folder.read_all
    changes = {"left": 2}

    def read_while_writing(fd: int, limit: int) -> bytes:
        data = real(fd, limit)
        if changes["left"] > 0:  # a writer appends while we read
            changes["left"] -= 1
            with path.open("a") as fh:
                fh.write("More text appended during the read.\n")
        return data

    monkeypatch.setattr(connectors.folder, "read_all", read_while_writing)
    report = engine.sync("docs")  # third read is stable
    assert report.added == 1 and report.failed == 0
    text = "".join(h.text for h in engine.index.get_document("docs", "busy.md"))
    assert text.count("appended during the read") == 2  # the whole final version, not a tear
    changes["left"] = 100
    write(path, "# Busy\n\nSecond version.\n")
    report = engine.sync("docs")
    assert report.failed == 1 and "kept changing while being read" in report.errors[0]["error"]
    engine.close()


def test_parse_timeout_and_parser_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    root = tmp_path / "docs"
    write(root / "a.md", "# A\n\nThe first good file.\n")
    write(root / "hang.md", "# Hang\n\nThis one never finishes parsing.\n")
    write(root / "crash.md", "# Crash\n\nThis one kills the parser.\n")
    write(root / "z.md", "# Z\n\nThe last good file.\n")
    parser = IsolatedParser(timeout_s=2, target="tests.reliability.slowparser:HangParser")
    engine = Engine(folder_settings(tmp_path / "home", root), embedder=FakeEmbedder(),
                    parser=parser)
    started = time.monotonic()
    report = engine.sync("docs")
    reasons = {e["key"]: e["error"] for e in report.errors}
    assert "timed out after 2 s" in reasons["hang.md"]
    assert "parser process died" in reasons["crash.md"]
    assert set(engine.index.documents("docs")) == {"a.md", "z.md"}
    assert time.monotonic() - started < 60  # bounded by the timeout, not by the hang
    engine.close()
    assert parser._proc is None  # closed: no child left behind


@pytest.mark.slow
def test_ten_thousand_files_in_one_folder(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    for i in range(10_000):
        (root / f"n{i:05d}.txt").write_text(f"Note {i} mentions token t{i}q.\n")
    engine = Engine(folder_settings(tmp_path / "home", root), embedder=FakeEmbedder())
    report = engine.sync("docs")
    assert report.added == 10_000 and report.failed == 0
    assert len(engine.index.documents("docs")) == 10_000
    assert engine.sync("docs").written == 0
    engine.close()
