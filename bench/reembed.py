"""Re-embedding work per edit: `freshrag sync --json` after each edit (its `embedded` count),
beside LlamaIndex and LangChain on the same edits (bench/peers.py)."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import folder_config, sync_json, write
from tests.corpus import paragraph, sentence

CASES = ["edit", "insert_top", "append", "delete_paragraph", "rename", "touch", "copy",
         "insert_top_long"]
NEW_SENTENCE = "A sentence inserted at the top mentions the harbour ferry timetable."


def hundred_chunk_doc() -> list[str]:
    """Paragraphs of ~110 words (one chunk each) under headings: ~100 chunks."""
    rng = random.Random(7)
    blocks = []
    for s in range(10):
        blocks.append(f"## Part {s}")
        blocks.extend(paragraph(rng, 110) for _ in range(10))
    return blocks


def long_paragraph_doc() -> list[str]:
    """Paragraphs of ~4,500 characters each."""
    rng = random.Random(8)
    out = []
    for _ in range(6):
        text = ""
        while len(text) < 4500:
            text += (" " if text else "") + sentence(rng)
        out.append(text)
    return out


def render(blocks: list[str]) -> str:
    return "# Handbook\n\n" + "\n\n".join(blocks) + "\n"


class Scenario:
    """Applies the eight edits to a folder, calling `measure()` after each one."""

    def __init__(self, root: Path):
        self.root = root
        self.doc = hundred_chunk_doc()
        self.long = long_paragraph_doc()
        write(root / "handbook.md", render(self.doc))
        write(root / "long.md", render(self.long))

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        def save() -> None:
            write(self.root / "handbook.md", render(self.doc))

        def edit() -> None:
            self.doc[35] = self.doc[35].replace(".", ", as the auditors noted.", 1)
            save()

        def insert_top() -> None:
            self.doc.insert(0, "An opening paragraph now explains who maintains this handbook "
                            "and how often the travel and expense rules are reviewed.")
            save()

        def append() -> None:
            self.doc.append("A closing paragraph lists the contacts for questions.")
            save()

        def delete_paragraph() -> None:
            del self.doc[60]
            save()

        def rename() -> None:
            (self.root / "handbook.md").rename(self.root / "employee-handbook.md")

        def touch() -> None:
            os.utime(self.root / "employee-handbook.md")

        def copy() -> None:
            shutil.copy(self.root / "employee-handbook.md", self.root / "handbook-copy.md")

        def insert_top_long() -> None:
            self.long[0] = NEW_SENTENCE + " " + self.long[0]
            write(self.root / "long.md", render(self.long))

        return list(zip(CASES, [edit, insert_top, append, delete_paragraph, rename, touch, copy,
                                insert_top_long], strict=True))

    def files(self) -> dict[str, str]:
        return {p.name: p.read_text() for p in sorted(self.root.glob("*.md"))}


def freshrag_counts() -> dict[str, Any]:
    """Texts sent to the model by the sync after each edit, as the product reports them."""
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Scenario(Path(tmp) / "docs")
        config = folder_config(Path(tmp), scenario.root)
        first = sync_json(config)
        counts: dict[str, Any] = {}
        for case, apply in scenario.steps():
            apply()
            counts[case] = sync_json(config)["chunks"]["embedded"]
    return {"initial": first["chunks"]["embedded"], "cases": counts}


def peer_counts(run_peer: Callable[[Scenario, Path], dict[str, int]]) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        return run_peer(Scenario(Path(tmp) / "docs"), Path(tmp))
