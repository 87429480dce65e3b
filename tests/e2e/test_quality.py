"""Retrieval quality through the installed command: re-chunking on a chunker change."""

from __future__ import annotations

from tests.corpus import markdown_doc
from tests.e2e.userpath import Project
from tests.unit.test_clean import SPHINX


def config(project: Project, chunk: str = "") -> None:
    project.write_config(f"""home = "{project.root / 'state'}"

{chunk}

[[sources]]
name = "docs"
type = "folder"
path = "./docs"
""")


def test_a_changed_chunker_makes_sync_rechunk_and_embed_only_changed_chunks(
        project: Project) -> None:
    (project.docs / "long.md").write_text(markdown_doc(1, sections=6, paragraphs=4, words=60))
    (project.docs / "short.md").write_text("# Note\n\nA short note about the harbour ferry.\n")
    config(project)
    first = project.json("sync")
    assert first["documents"]["added"] == 2, first
    assert project.json("sync")["documents"]["updated"] == 0

    # Other chunk sizes: every document is chunked again; chunks that come out the same (the
    # short note's only chunk, some of the long document's) stay as they are, only new ones
    # reach the model.
    config(project, "[chunk]\ntarget_tokens = 90\nmin_tokens = 32\n")
    again = project.json("sync")
    assert again["documents"]["updated"] == 2, again
    assert 0 < again["chunks"]["embedded"] == again["chunks"]["written"], again
    assert again["chunks"]["deleted"] < first["chunks"]["written"] - 1, (first, again)
    assert project.run("verify").returncode == 0
    after = project.json("sync")
    assert after["documents"]["updated"] == 0 and after["chunks"]["embedded"] == 0, after


def test_a_sphinx_page_syncs_with_no_navigation_chunk(project: Project) -> None:
    (project.docs / "json.html").write_bytes(SPHINX)
    config(project)
    assert project.json("sync")["documents"]["added"] == 1
    hits = project.json("search", "navigation index modules previous next topic", "-k", "20",
                        "--mode", "keyword") + project.json(
        "search", "navigation index modules previous", "-k", "20")
    texts = {h["text"] for h in hits}
    assert texts and all("lightweight data interchange" in t for t in texts), texts
    assert not any(s in t for t in texts for s in ("Navigation", "Previous topic", "¶",
                                                    "Copyright"))
