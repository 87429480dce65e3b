"""The sync flow under a real (test-harness) Prefect API: index contents, counts, artifact."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import sync as sync_mod
from flows.engines import engine_for


def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert arts, f"no artifact {key}"
    latest = max(arts, key=lambda a: a.created)
    return str(latest.data)


def _docs(config: Path) -> set[str]:
    engine, _ = engine_for(str(config))
    return set(engine.ledger.fingerprints("docs"))


def test_reconcile_then_keys(prefect_harness: None, folder: Path, config: Path) -> None:
    (folder / "a.md").write_text("# Apples\n\nApples grow on trees in orchards.\n")
    (folder / "b.md").write_text("# Bananas\n\nBananas are yellow tropical fruit.\n")
    out = sync_mod.sync("docs", config=str(config))
    assert out["documents"]["added"] == 2 and out["documents"]["failed"] == 0
    assert out["chunks"]["embedded"] >= 2
    md = _artifact(sync_mod.artifact_key("docs"))
    assert "full reconcile" in md and "| added |" in md.replace("documents | ", "| ")

    (folder / "a.md").write_text("# Apples\n\nApples and zucchini grow in the garden.\n")
    (folder / "b.md").rename(folder / "c.md")
    out = sync_mod.sync("docs", keys=["a.md", "b.md", "c.md"], config=str(config))
    assert out["documents"]["updated"] == 1
    assert out["documents"]["renamed"] == 1
    assert out["chunks"]["embedded"] == 1  # the rename reuses its vectors
    assert _docs(config) == {"a.md", "c.md"}
    engine, _ = engine_for(str(config))
    hits = engine.search("zucchini garden", k=1)
    assert hits and hits[0].doc_key == "a.md"
    md = _artifact(sync_mod.artifact_key("docs"))
    assert "3 key(s)" in md
    row = [ln for ln in md.splitlines() if ln.startswith("| | ")][0]
    # added updated deleted renamed unchanged touched failed
    assert row.split("|")[2:9] == [" 0 ", " 1 ", " 0 ", " 1 ", " 0 ", " 0 ", " 0 "]


def test_errors_are_reported_with_keys(prefect_harness: None, folder: Path,
                                       config: Path) -> None:
    (folder / "ok.md").write_text("# Fine\n\nA readable document.\n")
    big = folder / "big.txt"
    big.write_bytes(b"x " * 500)
    cfg = config.read_text() + 'max_file_mb = 0.00005\n'
    config.write_text(cfg)
    out = sync_mod.sync("docs", config=str(config))
    assert out["documents"]["failed"] == 1
    assert out["errors"][0]["key"] == "big.txt"
    md = _artifact(sync_mod.artifact_key("docs"))
    assert "`big.txt`" in md


def test_batches_large_reconcile(prefect_harness: None, folder: Path, config: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_mod, "BATCH_KEYS", 4)
    for n in range(10):
        (folder / f"n{n}.txt").write_text(f"Note number {n} about widgets.\n")
    out = sync_mod.sync("docs", config=str(config))
    assert out["documents"]["added"] == 10
    assert _docs(config) == {f"n{n}.txt" for n in range(10)}


def test_concurrency_limit_exists(prefect_harness: None) -> None:
    from prefect.client.orchestration import get_client

    sync_mod.ensure_limit(sync_mod.limit_name("x.y"))
    sync_mod.ensure_limit(sync_mod.limit_name("x.y"))
    with get_client(sync_client=True) as client:
        lim = client.read_global_concurrency_limit_by_name(sync_mod.limit_name("x.y"))
    assert lim.limit == 1


def test_unknown_source_fails_without_retry(prefect_harness: None, config: Path) -> None:
    with pytest.raises(Exception, match="unknown source"):
        sync_mod.sync("nope", config=str(config))
