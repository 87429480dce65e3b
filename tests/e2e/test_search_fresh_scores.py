"""Hybrid scores stay true to the index a server searches: `freshrag serve` keeps each query
word's best keyword score per index version, and a `freshrag sync` run as another process
makes a new version, so the server's next answer is the one a fresh process gives."""

from __future__ import annotations

import random

import httpx
import pytest

from tests.corpus import paragraph
from tests.e2e.userpath import Project

CONFIG = """\
home = "state"

[[sources]]
name = "docs"
type = "folder"
path = "docs"
"""
QUERY = "harbour lighthouse keeper logbook"


def served(base: str) -> list[tuple[str, float]]:
    r = httpx.post(f"{base}/search", json={"query": QUERY, "k": 5}, timeout=60)
    assert r.status_code == 200, r.text
    return [(h["doc_key"], round(h["score"], 5)) for h in r.json()["hits"]]


def fresh_process(project: Project) -> list[tuple[str, float]]:
    return [(h["doc_key"], round(h["score"], 5)) for h in project.json("search", QUERY)]


@pytest.mark.slow
def test_a_sync_by_another_process_gives_the_server_fresh_hybrid_scores(
        project: Project) -> None:
    project.write_config(CONFIG)
    rng = random.Random(11)
    for n in range(8):
        (project.docs / f"note{n}.md").write_text(
            f"# Note {n}\n\n{paragraph(rng, 50)} The harbour keeps a logbook.\n")
    assert project.json("sync")["documents"]["failed"] == 0
    _, base = project.serve()
    before = served(base)
    assert before == served(base) == fresh_process(project)  # asked, then kept: the same

    # Another process writes: a note whose words score higher than any before.
    (project.docs / "keeper.md").write_text(
        "# The keeper\n\nThe lighthouse keeper wrote the harbour logbook: lighthouse, "
        "lighthouse keeper, keeper's logbook.\n")
    assert project.json("sync")["documents"]["added"] == 1
    after = served(base)
    assert after != before
    assert after[0][0] == "keeper.md"
    assert after == fresh_process(project)  # nothing kept from the older version
