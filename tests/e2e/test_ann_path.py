"""ANN serving as a user meets it: `[index] ann_min_rows` low, `freshrag sync` trains the vector
index, a document added or deleted afterwards is found or gone at once (`freshrag search`, and
`freshrag serve`'s /search, which says where its time went)."""

from __future__ import annotations

import random

import httpx
import pytest

from tests.corpus import paragraph
from tests.e2e.userpath import Project

CONFIG = """\
home = "state"

[index]
ann_min_rows = 20

[[sources]]
name = "docs"
type = "folder"
path = "docs"
"""


def vector_keys(project: Project, query: str) -> list[str]:
    return [h["doc_key"] for h in project.json("search", query, "--mode", "vector", "-k", "3")]


def has_vector_index(project: Project) -> bool:
    import lancedb

    table = lancedb.connect(str(project.root / "state" / "index")).open_table("chunks")
    return any(list(ix.columns) == ["vector"] for ix in table.list_indices())


@pytest.mark.slow
def test_sync_trains_the_index_and_new_and_deleted_documents_show_at_once(
        project: Project) -> None:
    project.write_config(CONFIG)
    rng = random.Random(7)
    for n in range(12):  # 24 chunks: over the threshold
        (project.docs / f"note{n}.md").write_text(
            f"# Note {n}\n\n" + "\n\n".join(paragraph(rng, 60) for _ in range(4)) + "\n")
    report = project.json("sync")
    assert report["documents"]["failed"] == 0, report["errors"]
    assert report["chunks"]["written"] >= 20, report
    assert has_vector_index(project)

    (project.docs / "ospreys.md").write_text(
        "# Ospreys\n\nOspreys dive feet first to catch fish in the shallow estuary at dawn.\n")
    assert project.json("sync")["documents"]["added"] == 1
    assert vector_keys(project, "osprey diving for fish")[0] == "ospreys.md"

    bg, base = project.serve()
    r = httpx.post(f"{base}/search", json={"query": "osprey diving for fish", "k": 3},
                   timeout=60)
    assert r.status_code == 200 and r.json()["hits"][0]["doc_key"] == "ospreys.md"
    timing = r.headers["server-timing"]
    assert "embed;dur=" in timing and "index;dur=" in timing

    (project.docs / "ospreys.md").unlink()
    assert project.json("sync")["documents"]["deleted"] == 1
    r = httpx.post(f"{base}/search", json={"query": "osprey diving for fish", "k": 10},
                   timeout=60)
    assert "ospreys.md" not in [h["doc_key"] for h in r.json()["hits"]]
    assert has_vector_index(project)
