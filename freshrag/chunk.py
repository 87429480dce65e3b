"""Chunking whose boundaries depend on local content only, within the model's token limit."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from freshrag.model import Chunk, Element, content_hash

TokenCounter = Callable[[str], int]
SPECIAL_TOKENS = 2  # [CLS] and [SEP], added by the model to every input
# Bump when the same elements would chunk differently: `freshrag sync` then re-chunks every
# document (only chunks whose text changed are embedded again).
CHUNKER_VERSION = "2"
# A boundary before a heading has its score divided by this, so it is likelier to be the lowest
# nearby: sections tend to start chunks, and small ones still merge with their neighbours.
TITLE_WEIGHT = 4.0
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
    title: str  # the section this unit is in ("" before the first heading)
    is_title: bool = False

    @property
    def glues(self) -> bool:
        """A heading, a label or a list intro ("...:") belongs with what follows it."""
        return self.is_title or self.text.rstrip().endswith(":")


def sentences(text: str) -> list[str]:
    """Split prose into sentences with a cheap, deterministic rule."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


def _uniform(text: str) -> float:
    """A number in [0, 1) read off the text alone (the same text, the same number)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


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


def _units(elements: Sequence[Element], limit: int, count: TokenCounter) -> list[_Unit]:
    """Paragraphs that fit stay whole; longer ones become sentences (or word runs)."""
    out: list[_Unit] = []
    title, title_tokens = "", 0
    for el in elements:
        text = el.text.strip()
        if not text:
            continue
        n = count(text)
        if el.kind == "title" and n <= limit // 4:
            title, title_tokens = text, n
            out.append(_Unit(text, n, True, el.page, title, is_title=True))
            continue
        # An overlong "title" is prose unstructured mislabelled: it is body text.
        budget = limit - title_tokens
        if n <= budget:
            out.append(_Unit(text, n, True, el.page, title))
            continue
        first = True
        for sentence in sentences(text):
            m = count(sentence)
            pieces = [(sentence, m)] if m <= budget else list(_split_words(sentence, budget,
                                                                           count))
            for piece, size in pieces:
                out.append(_Unit(piece, size, first, el.page, title))
                first = False
    return out


def _scores(units: list[_Unit]) -> list[float]:
    """Each boundary's score (before unit i; the lowest nearby one is cut): a random number
    read off the unit after the boundary, smaller before a heading; none (inf) after a unit
    that belongs with what follows it."""
    out = [math.inf] * len(units)
    for i in range(1, len(units)):
        if not units[i - 1].glues:
            weight = TITLE_WEIGHT if units[i].is_title else 1.0
            out[i] = _uniform(units[i].text) / weight
    return out


def window_tokens(sizes: ChunkSizes) -> int:
    """How far a boundary looks on each side. Cuts are the local minima of the scores within
    this many tokens, so two cuts are at least this far apart and on average about twice as
    far: the target."""
    return max(sizes.target_tokens // 2, sizes.min_tokens, 1)


def _candidates(units: list[_Unit], scores: list[float], sizes: ChunkSizes) -> list[bool]:
    """A cut falls before unit i when its score is the lowest of every boundary within the
    window on either side (local-extremum content-defined chunking). The document's start and
    end count as the lowest scores, so no chunk at either end is shorter than the window.
    Only content within the window decides, never an offset or where a chunk began."""
    w = window_tokens(sizes)
    n = len(units)
    starts = [0] * (n + 1)  # token offset of each unit's start (and of the end)
    for i, unit in enumerate(units):
        starts[i + 1] = starts[i] + unit.tokens
    total = starts[n]
    kept = [False] * n
    for i in range(1, n):
        here = scores[i]
        if here == math.inf or starts[i] < w or total - starts[i] < w:
            continue
        best = True
        j = i - 1
        while best and j >= 1 and starts[i] - starts[j] <= w:
            best = (scores[j], j) > (here, i)
            j -= 1
        j = i + 1
        while best and j < n and starts[j] - starts[i] <= w:
            best = (scores[j], j) > (here, i)
            j += 1
        kept[i] = best
    return kept


def chunk(elements: Sequence[Element], count: TokenCounter,
          sizes: ChunkSizes = ChunkSizes()) -> list[Chunk]:
    """Group elements into chunks near target_tokens; each chunk's text (its section's title
    line when it starts inside a section, then its units) fits the model."""
    limit = sizes.max_tokens - SPECIAL_TOKENS
    units = _units(elements, limit, count)
    scores = _scores(units)
    cuts = _candidates(units, scores, sizes)
    titles: dict[str, int] = {}

    def prefix_tokens(unit: _Unit) -> int:
        if unit.is_title or not unit.title:
            return 0
        if unit.title not in titles:
            titles[unit.title] = count(unit.title)
        return titles[unit.title]

    def size_of(group: list[int]) -> int:
        return prefix_tokens(units[group[0]]) + sum(units[j].tokens for j in group)

    def split(run: list[int]) -> list[list[int]]:
        """A run between two cuts that does not fit is split at its strongest boundary
        (leaving min_tokens on each side where it can), and so on until every piece fits:
        the pieces follow from the run's content, so an edit inside the run changes only the
        pieces around it, not every piece after it."""
        if len(run) == 1 or size_of(run) <= limit:
            return [run]
        inner = [j for j in range(1, len(run)) if scores[run[j]] < math.inf] \
            or list(range(1, len(run)))
        roomy = [j for j in inner if size_of(run[:j]) >= sizes.min_tokens
                 and size_of(run[j:]) >= sizes.min_tokens]
        at = min(roomy or inner, key=lambda j: (scores[run[j]], j))
        return split(run[:at]) + split(run[at:])

    runs: list[list[int]] = []
    for i in range(len(units)):
        if not runs or cuts[i]:
            runs.append([])
        runs[-1].append(i)
    groups = [piece for run in runs for piece in split(run)]
    out: list[Chunk] = []
    for group in groups:
        head = units[group[0]]
        joined = _join([units[j] for j in group])
        title = head.text if head.is_title else head.title
        text = f"{head.title}\n\n{joined}" if prefix_tokens(head) else joined
        out.append(Chunk(text=text, title=title, page=head.page, ordinal=len(out),
                         hash=content_hash(text)))
    return out


def _join(units: list[_Unit]) -> str:
    parts: list[str] = []
    for unit in units:
        if parts:
            parts.append("\n\n" if unit.starts_paragraph else " ")
        parts.append(unit.text)
    return "".join(parts)
