"""The Index Protocol contract: every backend must pass every test here, unchanged."""

from __future__ import annotations

import math
from typing import Any

import pytest

from freshrag.config import IndexConfig
from freshrag.index import Index, IndexUnavailable
from freshrag.model import Filters, Mode, Record, chunk_id, content_hash
from tests.contract.conftest import Backend

DIM = 8


def unit(i: int, dim: int = DIM) -> list[float]:
    return [1.0 if j == i % dim else 0.0 for j in range(dim)]


def mix(a: int, b: int, wa: float) -> list[float]:
    v = [wa * x + (1 - wa) * y for x, y in zip(unit(a), unit(b), strict=True)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def rec(source: str, key: str, text: str, ordinal: int = 0, vector: list[float] | None = None,
        n: int = 0, **extra: Any) -> Record:
    h = content_hash(text)
    fields: dict[str, Any] = {
        "title": f"title of {key}", "location": f"/root/{key}", "page": None,
        "source_modified_at": 1_700_000_000.5, "indexed_at": 1_700_000_100.25, "metadata": {},
    }
    fields.update(extra)
    return Record(id=chunk_id(source, key, h, n), vector=vector or unit(ordinal), text=text,
                  source=source, doc_key=key, chunk_hash=h, ordinal=ordinal, **fields)


def corpus() -> list[Record]:
    return [
        rec("docs", "guide/intro.md", "Kestrel is a falcon that hovers over fields.", 0,
            metadata={"team": "birds", "level": 1}),
        rec("docs", "guide/intro.md", "Install the package with pip and run sync.", 1,
            metadata={"team": "birds", "level": 1}),
        rec("docs", "guide/advanced.md", "Hybrid search fuses keyword and vector scores.", 2,
            metadata={"team": "search", "level": 2}),
        rec("docs", "notes/todo.md", "Buy apples, bananas and a kestrel poster.", 3,
            metadata={"team": "birds", "level": 2}, page=4),
        rec("crm.tickets", "42", "Customer reports the falcon app crashes on login.", 4,
            metadata={"status": "open", "priority": 1, "tags": ["a", "b"]}),
    ]


@pytest.fixture
def index(backend: Backend) -> Index:
    ix = backend.open(DIM)
    ix.upsert(corpus())
    return ix


# writing and reading by document ----------------------------------------------------------------
def test_empty_index_answers_empty(backend: Backend) -> None:
    ix = backend.open(DIM)
    assert ix.ids_for("docs", "x") == {}
    assert ix.documents("docs") == {}
    assert ix.get_document("docs", "x") == []
    assert ix.stats() == {}
    assert ix.vectors([chunk_id("docs", "x", "h", 0)]) == {}
    assert ix.search("kestrel", unit(0), 5) == []
    ix.delete([chunk_id("docs", "x", "h", 0)])
    ix.delete([])
    ix.upsert([])


def test_ids_for_is_exact_on_source_and_key(backend: Backend) -> None:
    ix = backend.open(DIM)
    records = [rec("docs", "a/b.md", "one"), rec("docs", "a/b.md.bak", "two"),
               rec("docs", "A/B.md", "three"), rec("other", "a/b.md", "four"),
               rec("docs", "a b.md", "five"), rec("docs", "a", "six"),
               rec("docs", "it's \"q\" ü.md", "seven")]
    ix.upsert(records)
    assert ix.ids_for("docs", "a/b.md") == {records[0].id: records[0].chunk_hash}
    assert ix.ids_for("docs", "a b.md") == {records[4].id: records[4].chunk_hash}
    assert ix.ids_for("docs", "a") == {records[5].id: records[5].chunk_hash}
    assert ix.ids_for("docs", "it's \"q\" ü.md") == {records[6].id: records[6].chunk_hash}
    assert ix.ids_for("other", "a/b.md") == {records[3].id: records[3].chunk_hash}
    assert ix.ids_for("docs", "a/b") == {}


def test_upsert_same_id_replaces(backend: Backend) -> None:
    ix = backend.open(DIM)
    first = rec("docs", "k", "alpha text", 0)
    ix.upsert([first])
    again = rec("docs", "k", "alpha text", 0, vector=unit(3), title="new title")
    ix.upsert([again])
    ix.upsert([again])
    doc = ix.get_document("docs", "k")
    assert [(h.id, h.title) for h in doc] == [(first.id, "new title")]
    assert ix.vectors([first.id])[first.id] == pytest.approx(unit(3))
    assert ix.stats()["docs"].chunks == 1


def test_identical_chunks_in_one_document_are_distinct_objects(backend: Backend) -> None:
    ix = backend.open(DIM)
    a, b = rec("docs", "k", "same", 0, n=0), rec("docs", "k", "same", 1, n=1)
    ix.upsert([a, b])
    assert ix.ids_for("docs", "k") == {a.id: a.chunk_hash, b.id: b.chunk_hash}


def test_get_document_round_trips_every_field_in_ordinal_order(index: Index) -> None:
    doc = index.get_document("docs", "guide/intro.md")
    assert [h.ordinal for h in doc] == [0, 1]
    first = doc[0]
    want = corpus()[0]
    assert (first.id, first.text, first.source, first.doc_key, first.chunk_hash, first.title,
            first.location, first.page, first.metadata) == (
        want.id, want.text, "docs", "guide/intro.md", want.chunk_hash, want.title,
        want.location, None, {"team": "birds", "level": 1})
    assert first.source_modified_at == pytest.approx(1_700_000_000.5)
    assert first.indexed_at == pytest.approx(1_700_000_100.25)
    assert index.get_document("docs", "notes/todo.md")[0].page == 4
    ticket = index.get_document("crm.tickets", "42")[0]
    assert ticket.metadata == {"status": "open", "priority": 1, "tags": ["a", "b"]}


def test_documents_and_stats_count_per_source(index: Index) -> None:
    assert index.documents("docs") == {"guide/intro.md": 2, "guide/advanced.md": 1,
                                       "notes/todo.md": 1}
    assert index.documents("crm.tickets") == {"42": 1}
    assert index.documents("nope") == {}
    stats = index.stats()
    assert {s: (v.documents, v.chunks) for s, v in stats.items()} == {
        "docs": (3, 4), "crm.tickets": (1, 1)}


def test_delete_by_ids_ignores_unknown(index: Index) -> None:
    ids = list(index.ids_for("docs", "guide/intro.md"))
    index.delete([ids[0], chunk_id("docs", "missing", "h", 0)])
    assert list(index.ids_for("docs", "guide/intro.md")) == ids[1:]
    assert index.documents("docs")["guide/advanced.md"] == 1


def test_delete_document_removes_only_that_document(index: Index) -> None:
    assert index.delete_document("docs", "guide/intro.md") == 2
    assert index.delete_document("docs", "guide/intro.md") == 0
    assert index.ids_for("docs", "guide/intro.md") == {}
    assert set(index.documents("docs")) == {"guide/advanced.md", "notes/todo.md"}
    assert index.search("install package pip", None, 5, Mode.keyword) == []


def test_update_metadata_patches_without_touching_vectors_or_text(index: Index) -> None:
    ids = list(index.ids_for("docs", "guide/intro.md"))
    before = index.vectors(ids)
    index.update_metadata([*ids, chunk_id("docs", "missing", "h", 0)],
                          {"team": "raptors", "level": 3}, 1_800_000_000.0)
    doc = index.get_document("docs", "guide/intro.md")
    assert [h.metadata for h in doc] == [{"team": "raptors", "level": 3}] * 2
    assert [h.source_modified_at for h in doc] == [pytest.approx(1_800_000_000.0)] * 2
    assert doc[0].text == corpus()[0].text
    after = index.vectors(ids)
    assert {k: pytest.approx(v) for k, v in before.items()} == after
    hits = index.search("", unit(0), 5, Mode.vector, filters=Filters(metadata={"team": "raptors"}))
    assert {h.doc_key for h in hits} == {"guide/intro.md"}
    index.update_metadata([], {"x": 1}, 0.0)


def test_vectors_returns_stored_vectors_of_known_ids(index: Index) -> None:
    want = {r.id: r.vector for r in corpus()[:3]}
    got = index.vectors([*want, chunk_id("docs", "missing", "h", 0)])
    assert set(got) == set(want)
    for i, v in want.items():
        assert got[i] == pytest.approx(v, abs=1e-6)


# search -----------------------------------------------------------------------------------------
def test_vector_search_ranks_by_cosine_similarity(index: Index) -> None:
    hits = index.search("", mix(2, 3, 0.8), 3, Mode.vector)
    assert [h.ordinal for h in hits][:2] == [2, 3]
    assert hits[0].score > hits[1].score > hits[2].score
    assert hits[0].score == pytest.approx(0.8 / math.sqrt(0.68), abs=1e-4)  # 1 - cosine distance
    assert hits[0].to_json().keys() == {"text", "score", "source", "doc_key", "location",
                                        "title", "page", "metadata", "source_modified_at",
                                        "indexed_at"}
    assert len(index.search("", unit(0), 2, Mode.vector)) == 2
    assert index.search("", unit(0), 0, Mode.vector) == []


def test_keyword_search_matches_terms(index: Index) -> None:
    hits = index.search("kestrel", None, 10, Mode.keyword)
    assert {h.ordinal for h in hits} == {0, 3}
    assert all(h.score > 0 for h in hits)
    assert index.search("zeppelin", None, 10, Mode.keyword) == []
    assert index.search("   ", None, 10, Mode.keyword) == []


def test_hybrid_alpha_moves_between_keyword_and_vector(index: Index) -> None:
    query = "falcon"  # keyword: ordinals 0 and 4; vector: nearest is ordinal 2
    vector_only = index.search(query, unit(2), 5, Mode.hybrid, alpha=1.0)
    assert vector_only[0].ordinal == 2
    keyword_only = index.search(query, unit(2), 5, Mode.hybrid, alpha=0.0)
    assert keyword_only[0].ordinal in {0, 4}  # min-max: the weaker keyword hit scores 0
    assert {h.ordinal for h in keyword_only if h.score > 0} <= {0, 4}
    balanced = index.search("falcon crashes", unit(4), 5, Mode.hybrid, alpha=0.5)
    assert balanced[0].ordinal == 4  # both signals agree
    # its cosine is 1; its BM25 is near the query's ceiling (each word's best alone), not at it
    # unless it is also the best document for every word alone
    assert 0.9 < balanced[0].score <= 1.0 + 1e-6
    assert all(0.0 <= h.score <= 1.0 + 1e-6 for h in balanced)
    assert balanced == sorted(balanced, key=lambda h: -h.score)


def test_hybrid_with_blank_text_is_vector_search(index: Index) -> None:
    hits = index.search("", unit(1), 2, Mode.hybrid)
    assert hits[0].ordinal == 1


def test_vector_modes_need_a_vector(index: Index) -> None:
    with pytest.raises(ValueError):
        index.search("x", None, 3, Mode.vector)
    with pytest.raises(ValueError):
        index.search("x", None, 3, Mode.hybrid)


@pytest.mark.parametrize("mode", [Mode.hybrid, Mode.vector, Mode.keyword])
def test_filters_apply_in_every_mode(index: Index, mode: Mode) -> None:
    q, v = "falcon kestrel search", unit(0)
    assert {h.source for h in index.search(q, v, 10, mode, filters=Filters(source="crm.tickets"))
            } == {"crm.tickets"}
    hits = index.search(q, v, 10, mode, filters=Filters(doc_key_prefix="guide/"))
    assert hits and all(h.doc_key.startswith("guide/") for h in hits)
    hits = index.search(q, v, 10, mode, filters=Filters(source="docs",
                                                        metadata={"team": "birds"}))
    assert hits and {h.doc_key for h in hits} <= {"guide/intro.md", "notes/todo.md"}
    hits = index.search(q, v, 10, mode, filters=Filters(metadata={"team": "birds", "level": 2}))
    assert {h.doc_key for h in hits} == {"notes/todo.md"}
    assert index.search(q, v, 10, mode, filters=Filters(metadata={"level": "2"})) == []
    assert index.search(q, v, 10, mode, filters=Filters(source="none")) == []


def test_doc_key_prefix_is_literal(backend: Backend) -> None:
    ix = backend.open(DIM)
    keys = ["a_b/x", "axb/x", "a%b/x", "a*b/x", "a?b/x", "ab/x"]
    ix.upsert([rec("docs", k, f"word {n}", n) for n, k in enumerate(keys)])
    for prefix in ("a_b/", "a%b/", "a*b/", "a?b/"):
        hits = ix.search("word", unit(0), 10, Mode.vector, filters=Filters(doc_key_prefix=prefix))
        assert [h.doc_key for h in hits] == [prefix + "x"], prefix


def test_metadata_filter_on_list_and_nested_values(index: Index) -> None:
    hits = index.search("falcon", unit(4), 5, Mode.vector,
                        filters=Filters(metadata={"tags": ["a", "b"]}))
    assert [h.doc_key for h in hits] == ["42"]
    assert index.search("falcon", unit(4), 5, Mode.vector,
                        filters=Filters(metadata={"tags": ["b", "a"]})) == []


# lifecycle --------------------------------------------------------------------------------------
def test_data_survives_reopen(backend: Backend) -> None:
    ix = backend.open(DIM)
    ix.upsert(corpus())
    ix.optimize()
    ix.close()
    again = backend.open(None)
    assert again.documents("crm.tickets") == {"42": 1}
    assert again.search("", unit(4), 1, Mode.vector)[0].doc_key == "42"
    assert again.dim == DIM


def test_other_vector_size_is_a_clear_error(backend: Backend) -> None:
    ix = backend.open(DIM)
    ix.upsert(corpus())
    with pytest.raises(IndexUnavailable, match="dimensions"):
        ix.upsert([rec("docs", "k", "t", vector=[1.0] * (DIM * 2))])
    with pytest.raises(IndexUnavailable, match="dimensions"):
        backend.open(DIM * 2).upsert([rec("docs", "k", "t", vector=[1.0] * (DIM * 2))])
    assert backend.open(None).stats()["docs"].chunks == 4


def test_large_documents_and_batches(backend: Backend) -> None:
    ix = backend.open(DIM)
    big = [rec("docs", "big.md", f"chunk number {i}", i, vector=mix(i, i + 1, 0.7))
           for i in range(1_150)]
    ix.upsert(big)
    ids = ix.ids_for("docs", "big.md")
    assert len(ids) == 1_150
    assert len(ix.vectors(list(ids))) == 1_150
    assert ix.documents("docs") == {"big.md": 1_150}
    assert ix.delete_document("docs", "big.md") == 1_150
    assert ix.stats() == {}



NOTE_WORDS = ["north", "copper", "silent", "amber", "granite", "harbour", "crystal", "velvet",
              "iron", "maple"]
GARDEN = (" The garden behind the office needs watering twice a week in summer. Tomatoes, beans"
          " and courgettes grow along the south wall, and the compost is turned monthly.")


def test_hybrid_finds_the_note_holding_a_rare_code_first(backend: Backend,
                                                         embedder: Any) -> None:
    # Issue 13: thirty notes alike but for their codeword, real embeddings; the note asked for
    # also talks of something else, so its vector is the least like the query's. The exact
    # keyword match must still decide (min-max fusion of separate pools buries it).
    texts = [f"The codeword zorblax{n}quint unlocks the {NOTE_WORDS[n % 10]} "
             f"{NOTE_WORDS[n * 3 % 10]} vault.{GARDEN if n == 5 else ''}" for n in range(30)]
    vectors = embedder.embed(texts)
    ix = backend.open(len(vectors[0]))
    ix.upsert([rec("notes", f"note{n}", t, n, vector=v)
               for n, (t, v) in enumerate(zip(texts, vectors, strict=True))])
    query = "codeword zorblax5quint vault"
    (qv,) = embedder.embed([query])
    assert ix.search(query, None, 5, Mode.keyword)[0].doc_key == "note5"
    assert ix.search(query, qv, 5, Mode.vector)[0].doc_key != "note5"  # the test's premise
    for alpha in (IndexConfig().alpha, 0.5, 0.8):  # the default, and either side of it
        hits = ix.search(query, qv, 5, Mode.hybrid, alpha=alpha)
        assert [h.doc_key for h in hits][0] == "note5", (alpha, [h.doc_key for h in hits])
    # The same with the code inside a question of common words (more words looked up alone).
    question = "which vault does the codeword zorblax5quint unlock"
    (qv,) = embedder.embed([question])
    assert ix.search(question, qv, 5, Mode.hybrid, alpha=IndexConfig().alpha)[0].doc_key == \
        "note5"
