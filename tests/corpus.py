"""Deterministic generated prose: documents with headings and paragraphs of real-looking text."""

from __future__ import annotations

import random

WORDS = (
    "system team customer order invoice report policy release server network storage "
    "backup payment contract supplier warehouse shipment product feature request review "
    "budget forecast meeting schedule quality process change incident service account "
    "project market region office employee training security access database query index"
).split()
VERBS = "handles updates reviews ships tracks approves stores sends checks builds".split()
ADJ = "new quarterly urgent internal shared critical daily annual regional local".split()


def sentence(rng: random.Random) -> str:
    n = rng.randint(8, 18)
    words = [rng.choice(WORDS if i % 3 else ADJ) for i in range(n)]
    words.insert(rng.randint(1, 3), rng.choice(VERBS))
    return " ".join(words).capitalize() + "."


def paragraph(rng: random.Random, words: int = 120) -> str:
    out: list[str] = []
    while sum(len(s.split()) for s in out) < words:
        out.append(sentence(rng))
    return " ".join(out)


def markdown_doc(seed: int, sections: int = 5, paragraphs: int = 3, words: int = 120) -> str:
    rng = random.Random(seed)
    parts = [f"# Document {seed}"]
    for s in range(sections):
        parts.append(f"## Section {s} of {seed}")
        parts.extend(paragraph(rng, words) for _ in range(paragraphs))
    return "\n\n".join(parts) + "\n"
