"""Chunker: boundaries depend on local content only, and no chunk exceeds the model's limit."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from freshrag.chunk import (
    SPECIAL_TOKENS,
    ChunkSizes,
    _candidates,
    _scores,
    _units,
    chunk,
    sentences,
    window_tokens,
)
from freshrag.model import Element
from tests.corpus import paragraph


def words(text: str) -> int:
    return len(text.split())


def elements(seed: int, n: int, long: bool = False) -> list[Element]:
    rng = random.Random(seed)
    out = [Element("Title", "title")]
    for _ in range(n):
        out.append(Element(paragraph(rng, 700 if long else rng.randint(30, 260))))
    return out


def hashes(els: list[Element]) -> list[str]:
    return [c.hash for c in chunk(els, words)]


def changed(before: list[str], after: list[str]) -> int:
    return len(set(after) - set(before))


def test_every_chunk_fits_the_limit_with_a_word_counter() -> None:
    sizes = ChunkSizes(48, 160, 256)
    for c in chunk(elements(1, 40, long=True), words, sizes):
        assert words(c.text) + SPECIAL_TOKENS <= 256


def test_an_overlong_word_is_cut_by_characters() -> None:
    blob = "x" * 5000
    chunks = chunk([Element(blob)], lambda t: len(t) // 4 + 1, ChunkSizes(10, 50, 64))
    assert "".join(c.text for c in chunks) == blob
    assert all(len(c.text) // 4 + 1 + SPECIAL_TOKENS <= 64 for c in chunks)


def test_no_text_is_lost() -> None:
    els = elements(3, 20, long=True)
    joined = " ".join(c.text for c in chunk(els, words))
    for el in els[1:]:
        for s in sentences(el.text):
            assert s in joined


def test_small_sections_merge_and_a_heading_stays_with_its_text() -> None:
    els = [Element("Alpha", "title"), Element("one two three"), Element("Beta", "title"),
           Element("four five six")]
    chunks = chunk(els, words)
    assert [c.text for c in chunks] == ["Alpha\n\none two three\n\nBeta\n\nfour five six"]
    assert chunks[0].title == "Alpha"


def test_a_chunk_that_starts_inside_a_section_carries_its_title_line() -> None:
    els = elements(5, 12)
    chunks = chunk(els, words)
    assert len(chunks) > 1
    assert all(c.text.startswith("Title\n\n") and c.title == "Title" for c in chunks)


def test_no_chunk_ends_with_a_heading_or_a_label() -> None:
    rng = random.Random(11)
    els: list[Element] = []
    for s in range(40):
        els.append(Element(f"Heading {s}", "title"))
        els.append(Element(paragraph(rng, rng.randint(5, 40)) + " For example:"))
        els.append(Element(paragraph(rng, rng.randint(5, 60))))
    for c in chunk(els, words)[:-1]:
        last = c.text.rsplit("\n\n", 1)[-1]
        assert not last.endswith(":") and not last.startswith("Heading"), c.text


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), where=st.floats(0, 1), long=st.booleans())
def test_inserting_a_paragraph_changes_only_the_chunks_around_it(seed: int, where: float,
                                                                 long: bool) -> None:
    els = elements(seed, 30, long=long)
    before = hashes(els)
    at = 1 + int(where * (len(els) - 1))
    new = Element(paragraph(random.Random(seed + 1), 60 if not long else 40))
    after = hashes([*els[:at], new, *els[at:]])
    # The new chunk, and rarely a neighbour or two when a max-size cut has to move.
    assert changed(before, after) <= 4


def test_paragraph_insertions_usually_change_at_most_two_chunks() -> None:
    counts = []
    for seed in range(60):
        els = elements(seed, 30, long=seed % 2 == 0)
        at = 1 + seed % 30
        new = Element(paragraph(random.Random(seed + 1), 50))
        counts.append(changed(hashes(els), hashes([*els[:at], new, *els[at:]])))
    # One when it lands inside a chunk; two when it also brings a cut of its own (chunks now
    # hold several paragraphs); three only when both its edges become cuts.
    assert sum(c <= 2 for c in counts) / len(counts) >= 0.95
    assert max(counts) <= 3


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), where=st.floats(0, 1))
def test_a_sentence_inserted_into_a_long_paragraph_changes_at_most_three_chunks(
        seed: int, where: float) -> None:
    # Three is the bound of content-defined cutting: an inserted sentence that is itself a cut
    # point splits its chunk in two, and can merge the next cut away (too close to it).
    assert _sentence_insertion(seed, where) <= 3


def _sentence_insertion(seed: int, where: float) -> int:
    els = elements(seed, 6, long=True)
    before = hashes(els)
    target = 1 + int(where * 5)
    s = sentences(els[target].text)
    s.insert(int(where * len(s)), "An inserted sentence says something new here.")
    return changed(before, hashes([*els[:target], Element(" ".join(s)), *els[target + 1:]]))


def test_sentence_insertions_usually_change_at_most_two_chunks() -> None:
    counts = [_sentence_insertion(seed, where / 4) for seed in range(100) for where in range(4)]
    assert sum(c <= 2 for c in counts) / len(counts) >= 0.95


def test_editing_one_paragraph_changes_at_most_two_chunks() -> None:
    for seed in range(20):
        els = elements(seed, 30)
        before = hashes(els)
        i = 1 + seed % 30
        els[i] = Element(els[i].text.replace(".", ", indeed.", 1))
        assert changed(before, hashes(els)) <= 2


def test_real_tokenizer_limit(embedder) -> None:  # type: ignore[no-untyped-def]
    els = elements(7, 12, long=True) + [Element("é" * 3000), Element("ab12" * 800)]
    limit = embedder.max_tokens
    chunks = chunk(els, embedder.count_tokens, ChunkSizes(48, 160, limit))
    tok = embedder.tokenizer
    for c in chunks:
        assert len(tok(c.text)["input_ids"]) <= limit, c.text[:80]


def short_paragraphs(seed: int, n: int = 200) -> list[Element]:
    rng = random.Random(seed)
    return [Element(paragraph(rng, rng.randint(8, 45))) for _ in range(n)]


def test_short_paragraphs_merge_into_chunks_near_the_target() -> None:
    sizes = ChunkSizes(48, 160, 256)
    counts = sorted(words(c.text) for seed in range(5) for c in chunk(
        short_paragraphs(seed), words, sizes))
    median = counts[len(counts) // 2]
    assert 0.75 * 160 <= median <= 1.25 * 160, median
    assert sum(n < sizes.min_tokens for n in counts) <= 5  # a few, where a long run was split


def test_cuts_are_at_least_a_window_apart_and_decided_by_nearby_content() -> None:
    sizes = ChunkSizes(48, 160, 256)
    units = _units(short_paragraphs(3), 254, words)
    cuts = _candidates(units, _scores(units), sizes)
    offsets = [sum(u.tokens for u in units[:i]) for i, c in enumerate(cuts) if c]
    assert all(b - a > window_tokens(sizes) for a, b in zip(offsets, offsets[1:], strict=False))
    # Rewriting the first units changes no cut decision past one window from them.
    changed_units = [Element("A different opening paragraph, rewritten entirely.") for _ in
                     range(3)] + short_paragraphs(3)[3:]
    units2 = _units(changed_units, 254, words)
    cuts2 = _candidates(units2, _scores(units2), sizes)
    edge = next(i for i in range(len(units2)) if sum(u.tokens for u in units2[:i]) >
                sum(u.tokens for u in units2[:3]) + 2 * window_tokens(sizes))
    shift = len(units2) - len(units)
    assert cuts2[edge:] == cuts[edge - shift:]
