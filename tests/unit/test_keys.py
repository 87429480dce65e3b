"""A file's key is the same from the scan and from the watcher's events, and maps back to it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from connectors.folder import FolderSource
from flows.feeds import _Handler
from freshrag.config import SourceConfig, load_settings


def test_scan_watcher_and_read_agree_on_a_non_utf8_name(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    raw = os.path.join(os.fsencode(root), b"sub", b"men\xfc 100%.md")
    with open(raw, "wb") as fh:
        fh.write(b"# Menu\n\nSoup.\n")
    (root / "skip.xyz").write_text("x")
    os.mkfifo(root / "app.sock")  # a special file of a type never indexed: skipped, not failed
    settings = load_settings(config=None, home=tmp_path / "home")
    src = FolderSource(SourceConfig(name="docs", type="folder", path=str(root)), settings)
    cands = {c.key: c for c in src.scan({})}
    assert set(cands) == {"sub/men%FC 100%25.md", "skip.xyz", "app.sock"}
    assert cands["skip.xyz"].skipped == "unsupported file type .xyz"
    assert cands["app.sock"].skipped == "unsupported file type .sock"
    assert cands["app.sock"].error is None
    assert cands["skip.xyz"].fingerprint is None
    key = "sub/men%FC 100%25.md"
    assert cands[key].fingerprint is not None and cands[key].error is None
    handler = _Handler("docs", root, tmp_path / "home", coalescer=Any)  # type: ignore[arg-type]
    assert handler.key(raw) == key
    assert handler.key(os.fsdecode(raw)) == key
    assert [c.key for c in src.candidates([key])] == [key]
    item = src.read(key)
    assert item.data == b"# Menu\n\nSoup.\n" and item.filename == "men%FC 100%25.md"
    assert item.location.endswith("sub/men\\xfc 100%.md")
    os.unlink(raw)
    assert [(c.key, c.fingerprint) for c in src.candidates([key])] == [(key, None)]
