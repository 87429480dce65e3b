"""Parsing every supported type offline, and clear errors for files that cannot be parsed."""

from __future__ import annotations

import json
import os
import socket
import urllib.request

import pytest

from connectors.folder import key_of, rel_of
from freshrag import nlp
from freshrag.model import Fingerprint, Item
from freshrag.parse import ParseError, UnstructuredParser, skip_reason
from tests import samples

PROSE = (b"Quick Start Guide\n\nThe service indexes documents as they change. It runs offline and "
         b"keeps the index fresh.\n\nA second paragraph explains how the watcher works.\n")


def item(name: str, data: bytes) -> Item:
    return Item(key=name, data=data, fingerprint=Fingerprint(0, len(data)), modified_at=0.0,
                location=name, filename=name)


def parse(name: str, data: bytes) -> list[tuple[str, str]]:
    return [(e.kind, e.text) for e in UnstructuredParser().parse(item(name, data))]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("freshrag tried to use the network while parsing")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_prose_parses_offline_without_the_spacy_model_download(
        no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from unstructured.nlp import tokenize

    # If a future unstructured reaches its downloader another way, this must fail loudly.
    def forbidden() -> None:
        raise AssertionError("unstructured tried to download en_core_web_sm")

    monkeypatch.setattr(tokenize, "_install_spacy_model", forbidden)
    elements = parse("guide.txt", PROSE)
    assert nlp.installed_loader_is_ours()
    assert ("title", "Quick Start Guide") in elements
    assert any(kind == "text" and "watcher" in text for kind, text in elements)
    # The tokenizer unstructured uses is ours, and it finds verbs and sentences.
    assert tokenize.sent_tokenize("One sentence here. Another one follows.") == [
        "One sentence here.", "Another one follows."]
    assert any(tag == "VB" for _, tag in tokenize.pos_tag("the watcher runs"))


def test_offline_install_refuses_an_unknown_unstructured(monkeypatch: pytest.MonkeyPatch) -> None:
    from unstructured.nlp import tokenize

    monkeypatch.setattr(nlp, "_STATE", {})
    monkeypatch.delattr(tokenize, "_load_spacy_model")
    with pytest.raises(RuntimeError, match="cannot keep unstructured offline"):
        nlp.install()


@pytest.mark.parametrize("name,data,expect", [
    ("a.md", b"# Travel\n\nHotels are paid up to 180 euros.\n", "Hotels are paid"),
    ("a.html", b"<h1>FAQ</h1><p>The cafeteria opens at noon every day.</p>", "cafeteria"),
    ("a.csv", b"product,price\nlamp,49\n", "lamp"),
    ("a.json", b'{"service": {"owner": "team aurora"}}', "team aurora"),
    ("a.pdf", samples.pdf_bytes(["Quarterly report", "Revenue grew twelve percent."]),
     "Revenue grew"),
    ("a.docx", samples.docx_bytes("Heading", ["The docx body is parsed."]), "docx body"),
    ("a.pptx", samples.pptx_bytes("Slide title", "Slides are parsed too."), "Slides are parsed"),
    ("a.xlsx", samples.xlsx_bytes([["name", "qty"], ["walnut", "3"]]), "walnut"),
    ("a.eml", samples.eml_bytes("Moved", "The meeting moved to Friday."), "Friday"),
    ("a.txt", "Umlaute: Grüße aus Köln.".encode(), "Grüße"),
])
def test_each_supported_type(no_network: None, name: str, data: bytes, expect: str) -> None:
    assert any(expect in text for _, text in parse(name, data))


@pytest.mark.parametrize("name,data,reason", [
    ("broken.docx", b"PK\x03\x04 not really a zip", "cannot parse as docx"),
    ("blob.txt", bytes(range(256)) * 4, "binary content"),
    ("latin.txt", "café".encode("latin-1") + b" menu", "not valid UTF-8"),
    ("empty.md", b"", "empty file"),
    ("blank.txt", b"   \n\n", "empty file"),
    ("image.png", b"\x89PNG\r\n", "unsupported file type .png"),
    ("bad.json", b"{nope", "invalid JSON"),
    ("broken.pdf", b"%PDF-1.4 garbage", "cannot parse as pdf|no text found in pdf"),
])
def test_bad_files_raise_a_clear_reason(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(name, data)


NOTEBOOK = json.dumps({"cells": [
    {"cell_type": "markdown",
     "source": ["# Loading the data\n", "\n", "We read the heron counts."]},
    {"cell_type": "code", "source": "import pandas\ncounts = pandas.read_csv('herons.csv')",
     "outputs": [{"text": "OUTPUT IS LEFT OUT"}]},
]}).encode()


@pytest.mark.parametrize("name,data,expect", [
    ("tool.py", b"def gannet_count():\n    return 3\n\n\nclass Colony:\n    pass\n",
     "def gannet_count():\n    return 3"),
    ("README.rst", b"Title\n=====\n\nThe puffin colony is counted every spring.\n", "puffin"),
    ("ci.yaml", b"jobs:\n  test:\n    runs-on: kestrel-runner\n", "kestrel-runner"),
    ("pyproject.toml", b"[project]\nname = \"plover\"\n", "plover"),
    ("setup.cfg", b"[metadata]\nname = dunlin\n", "dunlin"),
    ("schema.sql", b"CREATE TABLE curlew (id int);\n", "curlew"),
    ("run.sh", b"#!/bin/sh\necho godwit\n", "godwit"),
    ("app.ts", b"export const tern: number = 4;\n", "tern"),
    ("layout.xml", b"<root><bird>avocet</bird></root>\n", "avocet"),
    ("Makefile", b"build:\n\techo sanderling\n", "sanderling"),
    ("analysis.ipynb", NOTEBOOK, "heron counts"),
])
def test_text_and_code_types(no_network: None, name: str, data: bytes, expect: str) -> None:
    assert any(expect in text for _, text in parse(name, data))


def test_notebook_cells_headings_and_no_outputs() -> None:
    elements = parse("analysis.ipynb", NOTEBOOK)
    assert elements[0] == ("title", "Loading the data")
    assert any("pandas.read_csv" in text for _, text in elements)
    assert not any("OUTPUT" in text for _, text in elements)


def test_skip_reason_is_decided_from_the_name() -> None:
    assert skip_reason("data.xyz") == "unsupported file type .xyz"
    assert skip_reason("photo.PNG") == "unsupported file type .PNG"
    assert skip_reason("a.out") is not None and skip_reason("mystery") is not None
    for name in ("a.md", "b.PY", "c.rst", "LICENSE", "Dockerfile", "d.ipynb", "e.pdf"):
        assert skip_reason(name) is None, name


def test_folder_keys_are_lossless() -> None:
    for raw in (b"caf\xe9.md", b"100%.md", b"a%41.md", "Grüße.md".encode(), b"d/\xff%x",
                b"\xed\xb2\x80.txt"):
        rel = os.fsdecode(raw)
        key = key_of(rel)
        key.encode("utf-8")  # always storable text
        assert os.fsencode(rel_of(key)) == raw
    assert key_of("plain/name.md") == "plain/name.md"
    assert key_of(os.fsdecode(b"caf\xe9.md")) == "caf%E9.md"
    assert key_of("100%.md") == "100%25.md"


def test_the_compact_english_word_list_has_exactly_unstructureds_words() -> None:
    import random
    import string
    from pathlib import Path

    import unstructured.nlp

    path = Path(unstructured.nlp.__file__).parent / "english-words.txt"
    real = set(path.read_text().split("\n"))  # what unstructured.nlp.english_words builds
    compact = nlp.SortedWords(path)
    assert len(compact) == len(real) and all(w in compact for w in real)
    rng = random.Random(7)
    probes = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, 9)))
              for _ in range(20_000)]
    probes += [w + "q" for w in sorted(real)[::40]] + [w[:-1] for w in sorted(real)[::40]]
    assert [w in compact for w in probes] == [w in real for w in probes]
    assert sum(w in real for w in probes) > 1000  # the probes hit members and non-members


_PARSE_ALL = """
import json, sys
from freshrag import nlp
if sys.argv[1] == "unstructured's own":
    nlp._compact_english_words = lambda: None
from freshrag.model import Fingerprint, Item
from freshrag.parse import UnstructuredParser
out = []
for name, text in json.loads(sys.stdin.read()):
    data = text.encode()
    item = Item(key=name, data=data, fingerprint=Fingerprint(0, len(data)), modified_at=0.0,
                location=name, filename=name)
    out.append([[e.kind, e.text, e.depth] for e in UnstructuredParser().parse(item)])
from unstructured.partition import text_type
print(json.dumps({"words": type(text_type.ENGLISH_WORDS).__name__, "parsed": out}))
"""


@pytest.mark.slow
def test_the_compact_word_list_parses_as_unstructureds_own() -> None:
    """Parse output must not change (a changed parse re-embeds users' documents): the same
    files parsed with unstructured's own word set and with the compact one, each in a fresh
    process as the parse worker runs. unstructured consults the list only with its language
    checks on (UNSTRUCTURED_LANGUAGE_CHECKS=true, a user's environment may set it), so on."""
    import subprocess
    import sys

    from tests.corpus import markdown_doc

    lines = ["Quarterly Report", "XJ-42 ZQW", "12345 67890", "Lorem ipsum dolor sit",
             "the aardvark digs", "API v2 endpoints", "zzkq wqxt vbnm", "e3b0c44298fc1c14",
             "Revenue Grew", "TODO", "Fix typo", "qwerty asdf", "Résumé écrit", "NASA JPL",
             "Meeting notes 2024-05-01", "brrr hmmm", "Kubernetes Helm Chart"]
    prose = "\n\n".join(lines)
    files = [("lines.txt", prose), ("lines.md", "\n\n".join(f"## {ln}\n\n{ln}" for ln in lines)),
             ("lines.html", "".join(f"<h2>{ln}</h2><p>{ln}</p><li>{ln}</li>" for ln in lines))]
    files += [(f"doc{i}.md", markdown_doc(i, sections=2, paragraphs=2, words=30)) for i in range(4)]

    def parsed(words: str) -> dict[str, object]:
        done = subprocess.run([sys.executable, "-c", _PARSE_ALL, words], input=json.dumps(files),
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "UNSTRUCTURED_LANGUAGE_CHECKS": "true"})
        assert done.returncode == 0, done.stderr[-3000:]
        result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
        return result

    own, compact = parsed("unstructured's own"), parsed("compact")
    assert (own["words"], compact["words"]) == ("set", "SortedWords")
    assert compact["parsed"] == own["parsed"]
