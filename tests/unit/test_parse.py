"""Parsing every supported type offline, and clear errors for files that cannot be parsed."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from freshrag import nlp
from freshrag.model import Fingerprint, Item
from freshrag.parse import ParseError, UnstructuredParser
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
