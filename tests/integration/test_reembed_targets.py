"""The benchmark's eight edits, as a regression test of the chunk counts (not of timings):
`freshrag sync --json` after each edit, as the bench runs it."""

from __future__ import annotations

import pytest

from bench.reembed import freshrag_counts
from bench.report import TARGETS


@pytest.mark.slow
def test_reembedding_stays_within_the_published_targets() -> None:
    counts = freshrag_counts()
    # the 100-paragraph document and the long one (chunks now hold several short paragraphs)
    assert counts["initial"] >= 100
    for case, most in TARGETS.items():
        assert counts["cases"][case] <= most, (case, counts["cases"])
    assert counts["cases"]["edit"] >= 1 and counts["cases"]["insert_top_long"] >= 1
