"""A table's readers column: captured with each row, re-written (never re-embedded) on UPDATE."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.permissions import ReadersUnknown, parse_readers
from freshrag.config import ConfigError
from freshrag.model import EVERYONE, Filters, Mode
from tests.sql.conftest import Db, at, make_db


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    yield from make_db(request.param, tmp_path)


def _table(db: Db) -> None:
    readers = "TEXT[]" if db.kind == "postgres" else "TEXT"
    ts = "TIMESTAMPTZ" if db.kind == "postgres" else "TIMESTAMP"
    db.exec(f"CREATE TABLE {{t}} (id INTEGER PRIMARY KEY, title TEXT, body TEXT, "
            f"readers {readers}, updated_at {ts})")


def _value(db: Db, readers: list[str] | None) -> Any:
    if readers is None or db.kind == "postgres":
        return readers
    return ", ".join(readers)


def _put(db: Db, id: int, body: str, readers: list[str] | None, t: float) -> None:
    db.exec("INSERT INTO {t} (id, title, body, readers, updated_at) "
            "VALUES (:id, :title, :body, :r, :ts)",
            id=id, title=f"ticket {id}", body=body, r=_value(db, readers), ts=at(t))


def _as(engine: Any, *principals: str) -> set[str]:
    hits = engine.search("refund", k=10, mode=Mode.keyword,
                         filters=Filters(principals=frozenset(principals)))
    return {h.doc_key for h in hits}


def test_readers_column_filters_and_an_update_rewrites_readers(db: Db, make: Any) -> None:
    _table(db)
    _put(db, 1, "refund for alice", ["user:alice"], 1)
    _put(db, 2, "refund for the support group", ["group:support", "user:bob"], 2)
    _put(db, 3, "refund policy for all", [EVERYONE], 3)
    _put(db, 4, "refund with no readers set", None, 4)
    engine = make(db, metadata=[], deleted=None, permissions="readers")
    report = engine.sync("tickets")
    assert report.added == 4
    assert [(c["key"], c["reason"]) for c in report.closed] == [
        ("4", "readers column 'readers' is NULL")]
    assert _as(engine, "user:alice") == {"1", "3"}
    assert _as(engine, "group:support") == {"2", "3"}
    assert _as(engine, "user:carol") == {"3"}
    assert [h.readers for h in engine.document("tickets", "4")] == [[]]
    embedded = engine.embedder.calls

    db.exec("UPDATE {t} SET readers = :r, updated_at = :ts WHERE id = 2",
            r=_value(db, ["user:bob"]), ts=at(10))
    update = engine.sync("tickets")
    assert (update.updated, update.embedded, update.written) == (1, 0, 0)
    assert engine.embedder.calls == embedded
    assert _as(engine, "group:support") == {"3"}
    assert _as(engine, "user:bob") == {"2", "3"}


def test_readers_column_must_exist(db: Db, make: Any) -> None:
    _table(db)
    _put(db, 1, "refund", ["user:alice"], 1)
    engine = make(db, metadata=[], deleted=None, permissions="allowed")
    with pytest.raises(ConfigError, match=r"sources\.tickets\.permissions: no column 'allowed'"):
        engine.sync("tickets")


@pytest.mark.parametrize("value,readers", [
    (["user:alice", "group:hr"], ["group:hr", "user:alice"]),
    ("user:alice, group:support", ["group:support", "user:alice"]),
    ('["uid:1001", "everyone"]', ["everyone", "uid:1001"]),
    ("{user:a,group:b}", ["group:b", "user:a"]),
])
def test_parse_readers(value: Any, readers: list[str]) -> None:
    assert parse_readers(value, "r") == readers


@pytest.mark.parametrize("value", [None, "", "alice", "user:alice, bob", 42, "[1, 2]", "[oops",
                                   ["user:a", None]])
def test_parse_readers_refuses_garbage(value: Any) -> None:
    with pytest.raises(ReadersUnknown):
        parse_readers(value, "r")
