"""The whole folder path on the embedded index with the real model: only what changed is redone."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from freshrag.engine import Engine
from freshrag.model import Filters, Mode
from tests import samples
from tests.corpus import markdown_doc


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)


def mixed_corpus(root: Path) -> None:
    """About fifty documents of every supported kind, each with a distinctive phrase."""
    for i in range(30):
        write(root / f"notes/n{i:02d}.md", markdown_doc(i, sections=2, paragraphs=2, words=80)
              + f"\nThe secret codeword for note {i} is zebra{i}quartz.\n")
    for i in range(8):
        write(root / f"text/t{i}.txt", f"Plain text file {i}. The harbor{i} lighthouse "
              "guides ships safely into port at night.\n")
    for i in range(4):
        write(root / f"web/p{i}.html", f"<h1>Page {i}</h1><p>The orchard{i} grows "
              "forty kinds of apples on the hill.</p>")
    write(root / "office/report.docx", samples.docx_bytes(
        "Annual report", ["The glacier expedition finished under budget this year."]))
    write(root / "office/deck.pptx", samples.pptx_bytes(
        "Roadmap", "The falcon release ships the offline mode."))
    write(root / "office/sheet.xlsx", samples.xlsx_bytes(
        [["item", "owner"], ["telescope", "Margit"]]))
    write(root / "office/paper.pdf", samples.pdf_bytes(
        ["Field notes", "The volcano survey measured sulphur levels."]))
    write(root / "mail/update.eml", samples.eml_bytes(
        "Office move", "The archive room moves to the basement on Monday."))
    write(root / "data/products.csv", "product,price\nmarimba mallets,30\n")
    write(root / "data/service.json", '{"service": {"name": "kestrel", "owner": "infra"}}')


def top_key(engine: Engine, query: str) -> str:
    hits = engine.search(query, k=3)
    assert hits, f"no hits for {query!r}"
    return hits[0].doc_key


def keys(engine: Engine) -> set[str]:
    return set(engine.index.documents("docs"))


def test_mixed_corpus_syncs_and_finds_the_right_document(tmp_path: Path,
                                                          make_engine) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "docs"
    mixed_corpus(root)
    engine = make_engine(root)
    report = engine.sync("docs")
    assert report.failed == 0, report.errors
    assert report.added == 49
    assert keys(engine) == {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert top_key(engine, "zebra17quartz") == "notes/n17.md"
    assert top_key(engine, "glacier expedition budget") == "office/report.docx"
    assert top_key(engine, "falcon release offline mode") == "office/deck.pptx"
    assert top_key(engine, "volcano survey sulphur") == "office/paper.pdf"
    assert top_key(engine, "archive room basement") == "mail/update.eml"
    assert top_key(engine, "kestrel service owner") == "data/service.json"
    hit = engine.search("lighthouse guides ships", k=1, mode=Mode.keyword)[0]
    assert hit.doc_key.startswith("text/") and hit.source_modified_at > 0 and hit.indexed_at > 0
    only = engine.search("apples orchard", k=5, filters=Filters(doc_key_prefix="web/"))
    assert only and all(h.doc_key.startswith("web/") for h in only)
    second = engine.sync("docs")
    assert (second.embedded, second.written, second.chunks_deleted) == (0, 0, 0)
    assert second.added == second.updated == second.touched == 0


def long_doc(path: Path, paragraphs: list[str]) -> None:
    write(path, "# Handbook\n\n" + "\n\n".join(paragraphs) + "\n")


def test_edits_reembed_only_what_changed(tmp_path: Path, make_engine) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "docs"
    text = markdown_doc(99, sections=8, paragraphs=5, words=110)
    write(root / "long.md", text)
    engine = make_engine(root)
    first = engine.sync("docs")
    assert first.embedded >= 40

    paragraphs = text.split("\n\n")
    paragraphs[20] = paragraphs[20].replace(".", " and one more clause.", 1)
    write(root / "long.md", "\n\n".join(paragraphs))
    edit = engine.sync("docs")
    assert edit.updated == 1 and 1 <= edit.embedded <= 2

    paragraphs.insert(2, "A new opening paragraph talks about the ferry timetable in winter.")
    write(root / "long.md", "\n\n".join(paragraphs))
    top = engine.sync("docs")
    assert 1 <= top.embedded <= 2
    assert top_key(engine, "ferry timetable winter") == "long.md"
    assert "ferry" not in " ".join(h.text for h in engine.search("and one more clause", k=1))

    del paragraphs[30]
    write(root / "long.md", "\n\n".join(paragraphs))
    assert engine.sync("docs").embedded <= 2


def test_touch_rename_move_delete(tmp_path: Path, make_engine) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "docs"
    for i in range(6):
        write(root / f"team/d{i}.md", markdown_doc(i, sections=2, paragraphs=2)
              + f"\nUnique marker walrus{i}.\n")
    engine = make_engine(root)
    engine.sync("docs")

    for p in root.rglob("*.md"):
        os.utime(p)
    touched = engine.sync("docs")
    assert (touched.touched, touched.embedded, touched.written) == (6, 0, 0)

    (root / "team/d0.md").rename(root / "team/renamed.md")
    renamed = engine.sync("docs")
    assert (renamed.renamed, renamed.deleted, renamed.embedded) == (1, 0, 0)
    assert "team/d0.md" not in keys(engine) and "team/renamed.md" in keys(engine)
    assert top_key(engine, "walrus0") == "team/renamed.md"

    shutil.move(str(root / "team"), str(root / "moved"))
    moved = engine.sync("docs")
    assert (moved.renamed, moved.embedded, moved.deleted, moved.added) == (6, 0, 0, 0)
    assert all(k.startswith("moved/") for k in keys(engine))

    shutil.copy(root / "moved/d1.md", root / "copy.md")
    copied = engine.sync("docs")
    assert (copied.added, copied.embedded) == (1, 0)

    (root / "moved/d2.md").unlink()
    gone = engine.sync("docs")
    assert gone.deleted == 1 and "moved/d2.md" not in keys(engine)
    assert all(h.doc_key != "moved/d2.md" for h in engine.search("walrus2", k=10))

    shutil.rmtree(root / "moved")
    folder_gone = engine.sync("docs")
    assert folder_gone.deleted == 5 and keys(engine) == {"copy.md"}


def test_bad_files_are_reported_and_the_rest_indexed(tmp_path: Path, make_engine) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "docs"
    write(root / "good.md", "# Good\n\nThe pelican report is fine.\n")
    write(root / "corrupt.docx", b"PK\x03\x04 broken zip")
    write(root / "blob.txt", os.urandom(2048).replace(b"\x00", b"\x01") + b"\x00")
    write(root / "empty.txt", b"")
    write(root / ".hidden/secret.md", "# Hidden\n\nnever indexed\n")
    engine = make_engine(root)
    report = engine.sync("docs")
    assert report.added == 1 and report.failed == 3
    reasons = {e["key"]: e["error"] for e in report.errors}
    assert "cannot parse as docx" in reasons["corrupt.docx"]
    assert "binary content" in reasons["blob.txt"]
    assert reasons["empty.txt"] == "empty file"
    assert keys(engine) == {"good.md"}
    assert {e["key"] for e in engine.ledger.errors("docs")} == set(reasons)
    # A failed file stays failed (and reported) until it changes; fixing it indexes it.
    write(root / "empty.txt", "Now the otter file has text.\n")
    fixed = engine.sync("docs")
    assert fixed.added == 1 and top_key(engine, "otter file") == "empty.txt"
    assert "empty.txt" not in {e["key"] for e in engine.ledger.errors("docs")}


def test_a_failed_reparse_keeps_the_previous_version(tmp_path: Path, make_engine) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "docs"
    write(root / "a.txt", "The heron nests by the river.\n")
    engine = make_engine(root)
    engine.sync("docs")
    write(root / "a.txt", b"\xff\xfe\x00broken")
    report = engine.sync("docs")
    assert report.failed == 1
    assert top_key(engine, "heron nests river") == "a.txt"


def test_document_chunks_follow_the_current_order(tmp_path: Path, make_engine) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "docs"
    paragraphs = [f"Paragraph {i} talks about topic {i} in enough words to stand alone as "
                  f"its own chunk of the document number {i}." for i in range(6)]
    write(root / "a.md", "\n\n".join(paragraphs))
    engine = make_engine(root)
    engine.settings.chunk.min_tokens = 8
    engine.sync("docs")
    write(root / "a.md", "\n\n".join(["A new first paragraph, written about otters, long "
                                      "enough to be a chunk of its own here.", *paragraphs]))
    engine.sync("docs")
    texts = [h.text for h in engine.document("docs", "a.md")]
    assert texts[0].startswith("A new first paragraph")
    assert [t for t in texts if t.startswith("Paragraph")] == sorted(
        (t for t in texts if t.startswith("Paragraph")), key=lambda t: int(t.split()[1]))
    assert [h.ordinal for h in engine.document("docs", "a.md")] == list(range(len(texts)))
