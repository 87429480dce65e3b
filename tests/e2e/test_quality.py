"""Retrieval quality through the installed command: re-chunking after a chunker change, no
navigation chunks from a Sphinx page, an exact product code found first by hybrid search."""

from __future__ import annotations

import pytest

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


@pytest.mark.slow
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


@pytest.mark.slow
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


NOTE_WORDS = ["north", "copper", "silent", "amber", "granite", "harbour", "crystal", "velvet",
              "iron", "maple"]


GARDEN = ("The garden behind the office needs watering twice a week in summer. Tomatoes, "
          "beans and courgettes grow along the south wall, and the compost is turned monthly.")


def zorblax_notes(project: Project) -> None:
    """30 short notes alike but for one codeword each (the issue's example); the one we look
    for also talks about something else, so its vector is the least like the query's."""
    for n in range(30):
        (project.docs / f"note{n}.md").write_text(
            f"# Note {n}\n\nThe codeword zorblax{n}quint unlocks the {NOTE_WORDS[n % 10]} "
            f"{NOTE_WORDS[n * 3 % 10]} vault.{' ' + GARDEN if n == 5 else ''}\n")


@pytest.mark.slow
def test_a_unique_token_with_common_words_finds_its_document_first_in_hybrid(
        project: Project) -> None:
    zorblax_notes(project)
    config(project)
    assert project.json("sync")["documents"]["added"] == 30
    hits = project.json("search", "codeword zorblax5quint vault")
    assert hits[0]["doc_key"] == "note5.md", [h["doc_key"] for h in hits]
    keyword = project.json("search", "codeword zorblax5quint vault", "--mode", "keyword")
    assert keyword[0]["doc_key"] == "note5.md"
