"""The embedded index's read path (freshrag/index/lance_search.py): hybrid search is the fusion
rule of freshrag/index/fusion.py over the index's own single-side results, each word's best
BM25 is asked once per table version, and a write by another process starts over."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lancedb
import numpy as np
import pytest

from freshrag.index.fusion import (
    KEYWORD_DEPTH,
    MOST_TERMS,
    fuse_union,
    keyword_ceiling,
    pool_size,
    query_terms,
)
from freshrag.index.lancedb import LanceIndex
from freshrag.model import Filters, Mode, Record

DIM = 16
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango").split()
QUERIES = ["alpha bravo", "charlie delta echo", "golf", "kilo lima mike november oscar",
           "papa quebec zulu", "alpha alpha tango"]


def corpus(n: int, seed: int, start: int = 0) -> list[Record]:
    """Rows of a few words each (many share words, so both sides' lists overlap), random unit
    vectors, and readers alternating between two principals."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [Record(id=f"r{start + i:05d}", vector=vectors[i].tolist(),
                   text=" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))),
                   source="s", doc_key=f"d{start + i}", chunk_hash=f"h{start + i}", ordinal=0,
                   title="", location="", page=None, source_modified_at=0.0, indexed_at=0.0,
                   readers=["user:a"] if i % 2 else ["user:b"]) for i in range(n)]


def query_vector(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(DIM)
    return (v / np.linalg.norm(v)).tolist()


def by_the_rule(index: LanceIndex, text: str, vector: list[float], k: int, alpha: float,
                filters: Filters | None) -> list[tuple[str, float]]:
    """Hybrid as fusion.py states it, from the index's single-side searches."""
    where = index._filter_sql(filters)
    pool = pool_size(k)
    by_vector = index._search(Mode.vector, text, vector, pool, where)
    deep = index._search(Mode.keyword, text, None, KEYWORD_DEPTH * pool, where)
    ceiling = keyword_ceiling(text, lambda t: next(
        (h.score for h in index._search(Mode.keyword, t, None, 1, where)), 0.0), MOST_TERMS,
        deep[0].score if deep else None)
    fused = fuse_union(by_vector, deep, pool, vector, index.vectors, alpha, ceiling)
    return [(h.id, round(h.score, 6)) for h in fused[:k]]


def searched(index: LanceIndex, text: str, vector: list[float], k: int, alpha: float,
             filters: Filters | None = None) -> list[tuple[str, float]]:
    return [(h.id, round(h.score, 6))
            for h in index.search(text, vector, k, Mode.hybrid, alpha, filters)]


@pytest.fixture
def index(tmp_path: Path) -> LanceIndex:
    index = LanceIndex(tmp_path / "index")
    index.upsert(corpus(400, 1))
    index.optimize()
    index.upsert(corpus(30, 2, start=1000))  # not folded into the full-text index yet
    return index


def test_hybrid_is_the_fusion_rule_over_the_single_side_searches(index: LanceIndex) -> None:
    for n, text in enumerate(QUERIES):
        vector = query_vector(n)
        for filters in (None, Filters(principals=frozenset({"user:a"}))):
            for k in (3, 10):
                got = searched(index, text, vector, k, 0.6, filters)
                assert got == by_the_rule(index, text, vector, k, 0.6, filters), (text, k)
                assert len(got) == k
    hits = index.search("alpha bravo", query_vector(0), 10, Mode.hybrid, 0.6,
                        Filters(principals=frozenset({"user:a"})))
    assert hits and all(h.readers == ["user:a"] for h in hits)
    assert all(h.text and h.doc_key and h.chunk_hash for h in hits)  # whole rows


def test_each_words_best_is_asked_once_per_table_version(index: LanceIndex) -> None:
    best = index._term_best
    index.search("charlie delta echo", query_vector(1), 5, Mode.hybrid, 0.6)
    assert best.asked == 3
    index.search("echo delta charlie foxtrot", query_vector(2), 5, Mode.hybrid, 0.6)
    assert best.asked == 4  # foxtrot only
    index.search("golf", query_vector(3), 5, Mode.hybrid, 0.6)
    assert best.asked == 4  # one word: its deep list's best is its best alone
    # Per filter: a reader's best may be lower than everyone's.
    index.search("charlie delta", query_vector(1), 5, Mode.hybrid, 0.6,
                 Filters(principals=frozenset({"user:a"})))
    assert best.asked == 6
    index.upsert(corpus(1, 3, start=2000))  # a write: BM25's statistics changed
    index.search("charlie delta echo", query_vector(1), 5, Mode.hybrid, 0.6)
    assert best.asked == 9


WRITE = """
import sys
from freshrag.index.lancedb import LanceIndex
from freshrag.model import Record
index = LanceIndex(__import__("pathlib").Path(sys.argv[1]))
index.upsert([Record(id=f"w{i}", vector=[1.0] + [0.0] * 15, text="quebec " * (i + 1),
                     source="s", doc_key=f"w{i}", chunk_hash=f"w{i}", ordinal=0, title="",
                     location="", page=None, source_modified_at=0.0, indexed_at=0.0)
              for i in range(3)])
"""


def test_a_write_by_another_process_is_searched_with_fresh_word_scores(
        index: LanceIndex) -> None:
    # The API server's handle; refresh() before each search, as the server does.
    text, vector = "papa quebec romeo", query_vector(7)
    before = searched(index, text, vector, 10, 0.5)
    kept = dict(index._term_best._best)
    subprocess.run([sys.executable, "-c", WRITE, str(index.path)], check=True)
    index.refresh()
    after = searched(index, text, vector, 10, 0.5)
    fresh = LanceIndex(index.path)  # nothing kept: every word asked now
    assert after == searched(fresh, text, vector, 10, 0.5)
    assert after != before
    # every word's best was asked again (BM25's statistics are the whole table's)
    now = index._term_best._best
    assert set(now) == set(kept) == {("", t) for t in query_terms(text)}
    assert now[("", "quebec")] != kept[("", "quebec")]  # its best is one of the new rows


def test_a_table_written_before_the_id_index_gets_it_at_the_next_write(
        tmp_path: Path) -> None:
    old = LanceIndex(tmp_path / "index")
    table = lancedb.connect(str(old.path)).create_table(old.table_name, schema=old._schema(DIM))
    table.add([{**r.__dict__, "metadata": "{}"} for r in corpus(50, 4)])
    table.create_fts_index("text", use_tantivy=False)
    reader = LanceIndex(old.path)
    assert not any(list(ix.columns) == ["id"] for ix in reader._table.list_indices())
    # searched by a scan meanwhile: the same hits
    assert len(reader.search("alpha", query_vector(0), 5, Mode.hybrid, 0.6)) == 5
    writer = LanceIndex(old.path)
    writer.upsert(corpus(1, 5, start=3000))
    assert any(list(ix.columns) == ["id"] for ix in writer._table.list_indices())


def test_concurrent_refreshes_share_one_look_and_see_every_earlier_write(
        index: LanceIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    reader = LanceIndex(index.path)
    looks = []
    checkout = reader._table.checkout_latest

    def slow_checkout() -> None:
        checkout()
        looks.append(1)
        time.sleep(0.3)  # a slow look: callers pile up behind it

    monkeypatch.setattr(reader._table, "checkout_latest", slow_checkout)
    first = threading.Thread(target=reader.refresh)
    first.start()
    time.sleep(0.1)  # the first look is done reading, and missed this write:
    index.upsert(corpus(1, 6, start=4000))
    rest = [threading.Thread(target=reader.refresh) for _ in range(6)]
    for t in rest:
        t.start()
    for t in [first, *rest]:
        t.join()
    assert len(looks) == 2  # the first, then one look on behalf of all who came later
    assert reader.ids_for("s", "d4000")  # and those callers returned seeing the write
