"""Parse an item's bytes into elements with unstructured's partitioners, offline."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any, Protocol

from freshrag.clean import clean_elements, clean_html
from freshrag.model import Element, Item

SKIP_CATEGORIES = {"PageBreak", "Header", "Footer", "PageNumber", "Image", "FigureCaption"}
# Prose (unstructured's text partitioner finds titles and paragraphs).
PROSE = (".txt", ".text", ".log", ".rst", ".adoc", ".asciidoc", ".org", ".tex")
# Code and configuration: indexed as plain text, one element per blank-line-separated block.
PLAIN = (".py", ".pyi", ".ipy", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".properties",
         ".xml", ".sql", ".sh", ".bash", ".zsh", ".fish", ".ps1", ".bat", ".js", ".mjs", ".cjs",
         ".jsx", ".ts", ".tsx", ".vue", ".svelte", ".go", ".rs", ".java", ".kt", ".kts", ".scala",
         ".groovy", ".gradle", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".cs", ".m",
         ".swift", ".rb", ".php", ".pl", ".pm", ".lua", ".r", ".jl", ".ex", ".exs", ".erl",
         ".hs", ".ml", ".clj", ".dart", ".css", ".scss", ".sass", ".less", ".proto", ".graphql",
         ".tf", ".hcl", ".cmake", ".mk", ".tsv", ".diff", ".patch", ".dockerfile")
# Files without an extension that are text by convention (matched case-insensitively).
PLAIN_NAMES = ("makefile", "dockerfile", "containerfile", "jenkinsfile", "vagrantfile", "gemfile",
               "rakefile", "procfile", "license", "licence", "copying", "notice", "readme",
               "changelog", "changes", "authors", "contributors", "contributing", "install",
               "todo", "news", "history")
TEXT_KINDS = {**dict.fromkeys(PROSE, "text"), **dict.fromkeys(PLAIN, "plain"), ".md": "md",
              ".markdown": "md", ".csv": "csv", ".json": "json", ".ipynb": "ipynb",
              ".html": "html", ".htm": "html"}
BINARY_KINDS = {".docx": "docx", ".pptx": "pptx", ".xlsx": "xlsx", ".pdf": "pdf", ".eml": "eml"}
SUPPORTED = sorted({*TEXT_KINDS, *BINARY_KINDS})
_OWN_PARSERS = ("json", "plain", "ipynb")  # parsed here, without unstructured


class ParseError(Exception):
    """The item cannot be parsed; the message names the reason (the sync reports it)."""


class Parser(Protocol):
    def parse(self, item: Item) -> list[Element]: ...


def decode_text(data: bytes) -> str:
    """Decode text bytes: UTF-8 (with or without BOM), UTF-16 with BOM; else ParseError."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise ParseError(f"not valid UTF-16 text: {exc}") from exc
    if b"\x00" in data[:8192]:
        raise ParseError("binary content (NUL bytes) in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"not valid UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def kind_of(filename: str) -> str | None:
    """The parser a file name selects (by extension), or None: not a type freshrag indexes."""
    # "notes.md " (a trailing space the file manager hides) is still Markdown
    name = PurePosixPath(filename.lower().rstrip()).name
    suffix = PurePosixPath(name).suffix
    if not suffix and name in PLAIN_NAMES:
        return "plain"
    return TEXT_KINDS.get(suffix) or BINARY_KINDS.get(suffix)


def skip_reason(filename: str) -> str | None:
    """Why a file is skipped (not indexed, not an error), decided from its name alone so that
    detect can tell without reading it; None for the types freshrag parses."""
    if kind_of(filename) is not None:
        return None
    suffix = PurePosixPath(filename).suffix
    return f"unsupported file type {suffix}" if suffix else "no extension (not a known text file)"


def _plain_elements(text: str) -> list[Element]:
    """Code and configuration: one element per block between blank lines, line breaks kept."""
    blocks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    return [Element(b.strip("\n")) for b in blocks if b.strip()]


def _notebook_elements(text: str) -> list[Element]:
    """A Jupyter notebook's cells: Markdown headings become titles; code cells stay whole;
    outputs are left out."""
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"not a Jupyter notebook: {exc}") from exc
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise ParseError("not a Jupyter notebook: no list of cells")
    out: list[Element] = []
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        source = cell.get("source", "")
        body = "".join(map(str, source)) if isinstance(source, list) else str(source)
        if cell.get("cell_type") != "markdown":
            if body.strip():
                out.append(Element(body.strip("\n")))
            continue
        for block in _plain_elements(body):
            first, _, rest = block.text.partition("\n")
            heading = re.match(r"(#{1,6})\s+(.*)", first)
            if heading:
                out.append(Element(heading.group(2).strip(), "title",
                                   depth=len(heading.group(1))))
                if rest.strip():
                    out.append(Element(rest.strip("\n")))
            else:
                out.append(block)
    return out


def _flatten_json(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        return [line for k, v in value.items() for line in _flatten_json(v, f"{path}.{k}"
                                                                         if path else str(k))]
    if isinstance(value, list):
        return [line for i, v in enumerate(value) for line in _flatten_json(v, f"{path}[{i}]")]
    return [f"{path}: {value}" if path else str(value)]


def _json_elements(text: str) -> list[Element]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc}") from exc
    if isinstance(value, dict):
        out: list[Element] = []
        for key, sub in value.items():
            out.append(Element(str(key), "title", depth=1))
            out.append(Element("\n".join(_flatten_json(sub)) or "(empty)"))
        return out
    return [Element(line) for line in _flatten_json(value)]


def _partitioner(kind: str) -> Callable[..., list[Any]]:
    if kind == "text":
        from unstructured.partition.text import partition_text
        return partition_text
    if kind == "md":
        from unstructured.partition.md import partition_md
        return partition_md
    if kind == "html":
        from unstructured.partition.html import partition_html
        return partition_html
    if kind == "csv":
        from unstructured.partition.csv import partition_csv
        return partition_csv
    if kind == "docx":
        from unstructured.partition.docx import partition_docx
        return partition_docx
    if kind == "pptx":
        from unstructured.partition.pptx import partition_pptx
        return partition_pptx
    if kind == "xlsx":
        from unstructured.partition.xlsx import partition_xlsx
        return partition_xlsx
    if kind == "eml":
        from unstructured.partition.email import partition_email
        return partition_email
    from unstructured.partition.pdf import partition_pdf
    return partition_pdf


def _convert(raw: list[Any]) -> list[Element]:
    out = []
    for el in raw:
        category = getattr(el, "category", "")
        text = (getattr(el, "text", "") or "").strip()
        if category in SKIP_CATEGORIES or not text:
            continue
        meta = getattr(el, "metadata", None)
        page = getattr(meta, "page_number", None)
        depth = getattr(meta, "category_depth", None) or 0
        kind = "title" if category == "Title" else "text"
        out.append(Element(text, kind, page=page, depth=depth))
    return out


class UnstructuredParser:
    """The default parser: unstructured's partitioner for the file's type (by extension).
    With `drop_boilerplate` (parse.drop_boilerplate, on by default) navigation, page headers
    and footers and permalink signs are removed (freshrag/clean.py)."""

    def __init__(self, drop_boilerplate: bool = True):
        self.drop_boilerplate = drop_boilerplate

    def prepare(self, item: Item) -> None:
        """Import what parsing this item needs (slow the first time, so outside the timeout)."""
        kind = kind_of(item.filename or item.key)
        if item.text is None and kind is not None and kind not in _OWN_PARSERS:
            from freshrag import nlp

            nlp.install()
            _partitioner(kind)

    def parse(self, item: Item) -> list[Element]:
        if item.text is not None:  # sources that render their own text (table rows)
            return [Element(item.text)] if item.text.strip() else []
        kind = kind_of(item.filename or item.key)
        if kind is None:  # detect skips these; a direct call still gets the reason
            raise ParseError(skip_reason(item.filename or item.key) or "unsupported file type")
        if not item.data.strip():
            raise ParseError("empty file")
        kwargs: dict[str, Any] = {"languages": ["eng"]}
        if kind in TEXT_KINDS.values():
            text = decode_text(item.data)
            if kind in _OWN_PARSERS:
                own = {"json": _json_elements, "plain": _plain_elements,
                       "ipynb": _notebook_elements}[kind](text)
                if not own and kind != "json":
                    raise ParseError(f"no text found in {kind} file")
                return own
            if kind == "csv":  # partition_csv takes only a file
                kwargs["file"] = io.BytesIO(text.encode("utf-8"))
            else:
                kwargs["text"] = clean_html(text) if kind == "html" and self.drop_boilerplate \
                    else text
        else:
            kwargs["file"] = io.BytesIO(item.data)
            kwargs["metadata_filename"] = item.filename or item.key
            if kind == "pdf":
                kwargs["strategy"] = "fast"
        from freshrag import nlp

        nlp.install()
        try:
            raw = _partitioner(kind)(**kwargs)
        except ParseError:
            raise
        except Exception as exc:  # a corrupt file surfaces as any exception type
            raise ParseError(f"cannot parse as {kind}: {type(exc).__name__}: {exc}") from exc
        elements = _convert(raw)
        if self.drop_boilerplate:
            elements = clean_elements(elements)
        if not elements:
            raise ParseError(f"no text found in {kind} file")
        return elements
