"""The CLI as a user drives it: JSON contracts, exit codes, config errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    full_env.pop("FRESHRAG_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "freshrag.cli", *args], cwd=cwd,
                          capture_output=True, text=True, env=full_env, timeout=300)


@pytest.mark.slow
def test_sync_search_status_json_and_exit_codes(tmp_path: Path) -> None:
    docs = tmp_path / "handbook"
    shutil_copy = __import__("shutil").copytree
    shutil_copy(REPO / "examples/docs", docs)
    (docs / "broken.docx").write_bytes(b"PK\x03\x04 nope")
    home = tmp_path / "home"

    first = run("sync", "--folder", str(docs), "--home", str(home), "--json", cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    report = json.loads(first.stdout)  # exactly one JSON document on stdout
    assert set(report) == {"documents", "chunks", "errors", "skipped", "seconds",
                           "embed_seconds", "readers_unknown"}
    assert set(report["documents"]) == {"added", "updated", "deleted", "renamed", "unchanged",
                                        "touched", "failed", "skipped"}
    assert set(report["chunks"]) == {"embedded", "reused", "written", "deleted"}
    assert all(isinstance(v, int) for part in ("documents", "chunks")
               for v in report[part].values())
    assert report["documents"]["added"] == 6 and report["documents"]["failed"] == 1
    assert report["errors"] == [{"source": "handbook", "key": "broken.docx",
                                 "error": report["errors"][0]["error"]}]

    (docs / "broken.docx").unlink()
    second = run("sync", "--folder", str(docs), "--home", str(home), "--json", cwd=tmp_path)
    assert second.returncode == 0
    assert json.loads(second.stdout)["chunks"]["written"] == 0

    found = run("search", "hotel costs per night", "--home", str(home), "--json", "-k", "2",
                cwd=tmp_path)
    hits = json.loads(found.stdout)
    assert hits[0]["doc_key"] == "policies/travel.md"
    assert {"text", "score", "source", "doc_key", "location", "title", "source_modified_at",
            "indexed_at"} <= set(hits[0])

    status = run("status", "--home", str(home), "--json", cwd=tmp_path)
    rows = json.loads(status.stdout)
    assert rows[0]["source"] == "handbook" and rows[0]["documents"] == 6


def test_config_file_sources_and_errors(tmp_path: Path) -> None:
    (tmp_path / "freshrag.toml").write_text(
        '[[sources]]\nname = "docs"\ntype = "folder"\npath = "nowhere"\n')
    missing = run("sync", "--json", cwd=tmp_path)
    assert missing.returncode == 2
    assert "sources.docs.path" in missing.stderr and missing.stdout == ""

    (tmp_path / "freshrag.toml").write_text('[chunk]\nmax_tokens = "lots"\n')
    bad = run("status", cwd=tmp_path)
    assert bad.returncode == 2 and "chunk.max_tokens" in bad.stderr

    (tmp_path / "freshrag.toml").write_text('[[sources]]\ntype = "folder"\n')
    unnamed = run("status", cwd=tmp_path)
    assert unnamed.returncode == 2 and "sources.0.name" in unnamed.stderr

    (tmp_path / "freshrag.toml").write_text('[index]\nurl = "ftp://x"\n')
    scheme = run("sync", cwd=tmp_path)
    assert scheme.returncode == 2 and "index.url" in scheme.stderr

    (tmp_path / "freshrag.toml").unlink()
    unknown = run("sync", "nope", "--folder", str(tmp_path), cwd=tmp_path,
                  env={"FRESHRAG_CONFIG": ""})
    assert unknown.returncode == 2 and "unknown source 'nope'" in unknown.stderr


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    from freshrag.config import load_settings

    cfg = tmp_path / "freshrag.toml"
    cfg.write_text('[model]\nbatch_size = 8\n[[sources]]\nname = "d"\ntype = "folder"\n'
                   'path = "docs"\n')
    os.environ["FRESHRAG_MODEL__BATCH_SIZE"] = "16"
    try:
        settings = load_settings(cfg)
    finally:
        del os.environ["FRESHRAG_MODEL__BATCH_SIZE"]
    assert settings.model.batch_size == 16
    assert settings.sources[0].options()["path"] == "docs"
    assert settings.base_dir == tmp_path.resolve()
