"""Readers captured from POSIX modes, owners and ACLs, kept fresh as metadata (no re-embed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.permissions import Level, posix_readers
from freshrag.engine import Engine
from freshrag.model import EVERYONE, Filters, Mode

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def _as(engine: Engine, *principals: str) -> set[str]:
    hits = engine.search("falcon notes", k=10, mode=Mode.keyword,
                         filters=Filters(principals=frozenset(principals)))
    return {h.doc_key for h in hits}


def _file(path: Path, text: str, uid: int, gid: int, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    os.chmod(root, 0o755)  # the source root counts, folders above it do not
    _file(root / "open.md", "# Open\n\nfalcon notes everyone may read.", 1001, 1001, 0o644)
    _file(root / "group.md", "# Group\n\nfalcon notes for group 2001.", 1001, 2001, 0o640)
    _file(root / "private.md", "# Private\n\nfalcon notes of uid 1002.", 1002, 1002, 0o600)
    _file(root / "sub/deep.md", "# Deep\n\nfalcon notes in a folder.", 1001, 1001, 0o644)
    return root


def test_readers_follow_modes_owners_folders_and_acls(
        tree: Path, make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(tree, permissions="posix")
    first = engine.sync("docs")
    assert first.added == 4 and first.closed == []
    everyone = {"open.md", "sub/deep.md"}
    assert _as(engine, "uid:1001") == everyone | {"group.md"}
    assert _as(engine, "gid:2001") == everyone | {"group.md"}
    assert _as(engine, "uid:1002") == everyone | {"private.md"}
    assert _as(engine, "user:nobody-here") == everyone
    [hit] = engine.document("docs", "group.md")
    assert hit.readers == ["uid:1001", "gid:2001"]  # no names for these ids here
    assert engine.document("docs", "private.md", Filters(principals=frozenset({"gid:2001"}))) \
        == []

    os.utime(tree / "open.md")  # a touch: nothing to write
    touched = engine.sync("docs")
    assert (touched.touched, touched.updated, touched.embedded) == (1, 0, 0)

    os.chmod(tree / "group.md", 0o600)  # revoke the group: a metadata write, no embedding
    revoked = engine.sync("docs")
    assert (revoked.updated, revoked.embedded, revoked.written) == (1, 0, 0)
    assert _as(engine, "gid:2001") == everyone

    os.chmod(tree / "sub", 0o700)  # a folder closes everything under it (owner: root)
    closed = engine.sync("docs")
    assert (closed.updated, closed.embedded) == (1, 0)
    assert _as(engine, "uid:1001") == {"open.md", "group.md"}

    if shutil.which("setfacl"):
        subprocess.run(["setfacl", "-m", "u:1003:r", str(tree / "private.md")], check=True)
        acl = engine.sync("docs")
        assert (acl.updated, acl.embedded) == (1, 0)
        assert _as(engine, "uid:1003") == {"open.md", "private.md"}

    os.rename(tree / "open.md", tree / "moved.md")
    moved = engine.sync("docs")
    assert (moved.renamed, moved.embedded) == (1, 0)
    assert "moved.md" in _as(engine, "user:nobody-here")


def test_unreadable_acl_fails_closed_and_is_reported(
        tree: Path, make_engine: Callable[..., Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel refuses to store a malformed ACL, so one is read back as the parser would
    see it: the file is indexed for admins only and the report names it."""
    import connectors.folder as folder

    real = folder.level_of

    def level_of(path: str | os.PathLike[str], st: os.stat_result) -> Level:
        got = real(path, st)
        if os.fspath(path).endswith("group.md"):
            return Level(got.uid, got.gid, got.mode, error="unreadable ACL on group.md: x")
        return got
    monkeypatch.setattr(folder, "level_of", level_of)
    engine = make_engine(tree, permissions="posix")
    report = engine.sync("docs")
    assert report.closed == [{"source": "docs", "key": "group.md",
                              "reason": "unreadable ACL on group.md: x"}]
    assert report.to_json()["readers_unknown"] == report.closed
    assert "group.md" not in _as(engine, "uid:1001", "gid:2001")
    assert [h.readers for h in engine.document("docs", "group.md")] == [[]]


def test_posix_rules() -> None:
    """0604: others may read but the owning group may not, so `everyone` would over-grant;
    a folder without x for others leaves only who it grants."""
    root = Level(0, 0, 0o755)
    assert posix_readers([root, Level(5001, 5002, 0o604)]) == ["uid:5001"]
    assert posix_readers([root, Level(5001, 5002, 0o644)]) == [EVERYONE]
    assert posix_readers([root, Level(5001, 5002, 0o640)]) == ["uid:5001", "gid:5002"]
    assert posix_readers([root, Level(5001, 5002, 0o400)]) == ["uid:5001"]
    assert posix_readers([Level(0, 0, 0o750), Level(5001, 5002, 0o644)]) == [
        "user:root", "uid:0", "group:root", "gid:0"]
    assert posix_readers([root, Level(5001, 5002, 0o000)]) == []


def test_mode_none_is_everyone(tree: Path, make_engine: Callable[..., Engine]) -> None:
    engine = make_engine(tree)
    engine.sync("docs")
    assert _as(engine, "uid:999") == {"open.md", "group.md", "private.md", "sub/deep.md"}
