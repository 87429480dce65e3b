"""Chunking whose boundaries depend on local content only, within the model's token limit."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from freshrag.model import Chunk, Element, content_hash

TokenCounter = Callable[[str], int]
SPECIAL_TOKENS = 2  # [CLS] and [SEP], added by the model to every input
# Inside a long paragraph, cut before a sentence whose hash is 0 mod this (after min_tokens):
# about one cut per this many sentences, decided by the sentence itself, not by its offset.
SENTENCE_DIVISOR = 4
PARAGRAPH_DIVISOR = 3
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])[\"')\]]*\s+(?=\S)")


@dataclass(frozen=True)
class ChunkSizes:
    min_tokens: int = 48
    target_tokens: int = 160
    max_tokens: int = 256  # including the model's special tokens


@dataclass
class _Unit:
    text: str
    tokens: int
    starts_paragraph: bool
    page: int | None


def _hash_mod(text: str, divisor: int) -> bool:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(),
                          "big") % divisor == 0


def sentences(text: str) -> list[str]:
    """Split prose into sentences with a cheap, deterministic rule."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


def _split_words(text: str, budget: int, count: TokenCounter) -> Iterator[tuple[str, int]]:
    """Pieces of `text` of at most `budget` tokens, cut between words (or characters)."""
    words = text.split()
    piece: list[str] = []
    size = 0
    for word in words:
        n = count(word)
        if n > budget:  # one "word" longer than the budget (a blob, a URL): cut by characters
            if piece:
                yield " ".join(piece), size
                piece, size = [], 0
            yield from _split_chars(word, budget, count)
            continue
        if piece and size + n > budget:
            yield " ".join(piece), size
            piece, size = [], 0
        piece.append(word)
        size += n
    if piece:
        yield " ".join(piece), size


def _split_chars(word: str, budget: int, count: TokenCounter) -> Iterator[tuple[str, int]]:
    start = 0
    while start < len(word):
        lo, hi = start + 1, len(word)
        while lo < hi:  # longest prefix that fits
            mid = (lo + hi + 1) // 2
            if count(word[start:mid]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        yield word[start:lo], count(word[start:lo])
        start = lo


def _units(element: Element, budget: int, count: TokenCounter) -> list[_Unit]:
    text = element.text.strip()
    n = count(text)
    if n <= budget:  # a paragraph that fits stays whole
        return [_Unit(text, n, True, element.page)]
    out: list[_Unit] = []
    for sentence in sentences(text):
        m = count(sentence)
        pieces = [(sentence, m)] if m <= budget else list(_split_words(sentence, budget, count))
        for piece, size in pieces:
            out.append(_Unit(piece, size, not out, element.page))
    return out


def _sections(elements: Sequence[Element]) -> Iterator[tuple[str, list[Element]]]:
    title = ""
    body: list[Element] = []
    for el in elements:
        if not el.text.strip():
            continue
        if el.kind == "title":
            if body:
                yield title, body
            title, body = el.text.strip(), []
        else:
            body.append(el)
    if body or title:
        yield title, body


def chunk(elements: Sequence[Element], count: TokenCounter,
          sizes: ChunkSizes = ChunkSizes()) -> list[Chunk]:
    """Group elements into chunks; each chunk's text (title line + body) fits the model."""
    limit = sizes.max_tokens - SPECIAL_TOKENS
    out: list[Chunk] = []
    for title, body in _sections(elements):
        title_tokens = count(title) if title else 0
        if title and title_tokens > limit // 4:
            # An overlong "title" is prose unstructured mislabelled: keep it as body text.
            body = [Element(title, "text"), *body]
            title, title_tokens = "", 0
        if not body:
            body = [Element(title, "text")] if title else []
            title, title_tokens = "", 0
        budget = limit - title_tokens
        units = [u for el in body for u in _units(el, budget, count)]
        for group in _group(units, budget, sizes):
            joined = _join(group)
            text = f"{title}\n\n{joined}" if title else joined
            out.append(Chunk(text=text, title=title, page=group[0].page, ordinal=len(out),
                             hash=content_hash(text)))
    return out


def _group(units: list[_Unit], budget: int, sizes: ChunkSizes) -> Iterator[list[_Unit]]:
    """Cut before a candidate unit (a paragraph start, or a sentence whose hash says so) when at
    least min_tokens lie between it and the previous candidate. Both facts are read off the
    content around the unit, never off where the current chunk began, so an edit moves only
    the cuts next to it. Only the max-size cut depends on the chunk's start."""
    buf: list[_Unit] = []
    size = 0
    since_candidate = 0
    for unit in units:
        candidate = unit.starts_paragraph or _hash_mod(unit.text, SENTENCE_DIVISOR)
        cut = candidate and (since_candidate >= sizes.min_tokens // 2 or (
            unit.starts_paragraph and _hash_mod(unit.text, PARAGRAPH_DIVISOR)))
        if buf and (cut or size + unit.tokens > budget):
            yield buf
            buf, size = [], 0
        if candidate:
            since_candidate = 0
        buf.append(unit)
        size += unit.tokens
        since_candidate += unit.tokens
    if buf:
        yield buf


def _join(units: list[_Unit]) -> str:
    parts: list[str] = []
    for unit in units:
        if parts:
            parts.append("\n\n" if unit.starts_paragraph else " ")
        parts.append(unit.text)
    return "".join(parts)
