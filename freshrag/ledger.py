"""The ledger: per-document fingerprints and chunk hashes, source state, and the vector cache."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from freshrag.filelock import file_lock
from freshrag.model import Fingerprint

metadata = MetaData()

documents = Table(
    "freshrag_documents", metadata,
    Column("source", String(200), primary_key=True),
    Column("doc_key", String(1000), primary_key=True),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("inode", BigInteger, nullable=False),
    # Fingerprint.perm: who may read it, hashed ("" when readers are not captured)
    Column("perm", String(32), nullable=False, server_default=""),
    Column("content_hash", String(64), nullable=False, index=True),
    Column("chunk_hashes", Text, nullable=False),  # JSON list, in ordinal order
    Column("meta_hash", String(64), nullable=False, default=""),
    Column("modified_at", Float, nullable=False),
    Column("indexed_at", Float, nullable=False),
)

source_state = Table(
    "freshrag_sources", metadata,
    Column("source", String(200), primary_key=True),
    Column("cursor", Text, nullable=True),
    Column("watermark", Float, nullable=True),
    Column("last_start", Float, nullable=True),
    Column("last_end", Float, nullable=True),
    Column("last_report", Text, nullable=True),
)

errors = Table(
    "freshrag_errors", metadata,
    Column("source", String(200), primary_key=True),
    Column("doc_key", String(1000), primary_key=True),
    Column("error", Text, nullable=False),
    Column("at", Float, nullable=False),
)

# Documents whose index objects are being changed: set before an index write, cleared in the
# ledger transaction that records the write. A key left here by a crash is redone in full.
intents = Table(
    "freshrag_intents", metadata,
    Column("source", String(200), primary_key=True),
    Column("doc_key", String(1000), primary_key=True),
    Column("at", Float, nullable=False),
)

# One row per held lock (a source being synced): who holds it, and until when its lease runs.
locks = Table(
    "freshrag_locks", metadata,
    Column("name", String(200), primary_key=True),
    Column("holder", Text, nullable=False),  # JSON: host, pid, start, command
    Column("token", String(64), nullable=False),
    Column("acquired_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

# How each source's documents were cut into chunks (chunker version and sizes, cleaning): a
# sync that finds another one re-chunks every document of the source.
pipelines = Table(
    "freshrag_pipelines", metadata,
    Column("source", String(200), primary_key=True),
    Column("signature", Text, nullable=False),
)

# Which model's vectors each source's chunks hold (the embedder's model_id: model, and the
# precision when it changes the vectors). Another one re-embeds the source; none is searched
# with a query vector of another model.
vector_models = Table(
    "freshrag_vector_models", metadata,
    Column("source", String(200), primary_key=True),
    Column("model", Text, nullable=False),
)

embeddings = Table(
    "freshrag_embeddings", metadata,
    Column("model", String(200), primary_key=True),
    Column("text_hash", String(64), primary_key=True),
    Column("vector", LargeBinary, nullable=False),  # float32 little-endian
)


@dataclass
class DocState:
    source: str
    key: str
    fingerprint: Fingerprint
    content_hash: str
    chunk_hashes: list[str]
    modified_at: float
    indexed_at: float = field(default_factory=time.time)
    meta_hash: str = ""


@dataclass
class SourceState:
    source: str
    cursor: str | None = None
    watermark: float | None = None
    last_start: float | None = None
    last_end: float | None = None
    last_report: dict[str, Any] | None = None


def _row_to_doc(row: Any) -> DocState:
    return DocState(
        source=row.source, key=row.doc_key,
        fingerprint=Fingerprint(row.mtime_ns, row.size, row.inode, row.perm or ""),
        content_hash=row.content_hash, chunk_hashes=json.loads(row.chunk_hashes),
        modified_at=row.modified_at, indexed_at=row.indexed_at, meta_hash=row.meta_hash or "",
    )


class Ledger:
    """SQLAlchemy Core over SQLite (default, under home) or Postgres."""

    def __init__(self, url: str):
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, connect_args={"timeout": 30})
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        self.url = url
        self._create_tables()

    def _create_tables(self) -> None:
        """Create what is missing, one process at a time: processes opening a new ledger at
        once would otherwise race between "does the table exist?" and CREATE TABLE."""
        if self.engine.dialect.name == "sqlite":
            db = Path(self.url.removeprefix("sqlite:///"))
            with file_lock(db.with_name(db.name + ".lock")):
                with self.engine.begin() as conn:
                    self._create(conn)
                with self.engine.begin() as conn:
                    conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        else:
            with self.engine.begin() as conn:
                if self.engine.dialect.name == "postgresql":  # held until this commit
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7226519101)")
                self._create(conn)

    @staticmethod
    def _create(conn: Connection) -> None:
        from sqlalchemy import inspect

        metadata.create_all(conn)
        # a ledger from before readers were captured gets the `perm` column (empty: a posix
        # source's next scan sees every file as changed, and re-writes readers, no re-embed)
        have = {c["name"] for c in inspect(conn).get_columns("freshrag_documents")}
        if "perm" not in have:
            conn.exec_driver_sql("ALTER TABLE freshrag_documents ADD COLUMN perm "
                                 "VARCHAR(32) NOT NULL DEFAULT ''")

    def close(self) -> None:
        self.engine.dispose()

    # documents -----------------------------------------------------------------
    def fingerprints(self, source: str) -> dict[str, Fingerprint]:
        q = select(documents.c.doc_key, documents.c.mtime_ns, documents.c.size,
                   documents.c.inode, documents.c.perm).where(documents.c.source == source)
        with self.engine.connect() as conn:
            return {r.doc_key: Fingerprint(r.mtime_ns, r.size, r.inode, r.perm or "")
                    for r in conn.execute(q)}

    def get(self, source: str, key: str) -> DocState | None:
        q = select(documents).where(and_(documents.c.source == source, documents.c.doc_key == key))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return _row_to_doc(row) if row else None

    def get_many(self, source: str, keys: Sequence[str]) -> dict[str, DocState]:
        out: dict[str, DocState] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(keys), 500):
                q = select(documents).where(and_(documents.c.source == source,
                                                 documents.c.doc_key.in_(keys[i:i + 500])))
                out.update({r.doc_key: _row_to_doc(r) for r in conn.execute(q)})
        return out

    def keys(self, source: str) -> list[str]:
        q = select(documents.c.doc_key).where(documents.c.source == source)
        with self.engine.connect() as conn:
            return [r.doc_key for r in conn.execute(q)]

    def put(self, doc: DocState) -> None:
        self.put_many([doc])

    def put_many(self, docs: Sequence[DocState]) -> None:
        """Record documents as indexed (one transaction) and clear their errors."""
        with self.engine.begin() as conn:
            for doc in docs:
                values = {
                    "mtime_ns": doc.fingerprint.mtime_ns, "size": doc.fingerprint.size,
                    "inode": doc.fingerprint.inode, "perm": doc.fingerprint.perm,
                    "content_hash": doc.content_hash,
                    "chunk_hashes": json.dumps(doc.chunk_hashes), "meta_hash": doc.meta_hash,
                    "modified_at": doc.modified_at, "indexed_at": doc.indexed_at,
                }
                self._upsert(conn, documents, {"source": doc.source, "doc_key": doc.key}, values)
                for table in (errors, intents):
                    conn.execute(delete(table).where(and_(table.c.source == doc.source,
                                                          table.c.doc_key == doc.key)))

    def touch(self, source: str, key: str, fp: Fingerprint) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(documents).where(and_(
                documents.c.source == source, documents.c.doc_key == key)).values(
                mtime_ns=fp.mtime_ns, size=fp.size, inode=fp.inode, perm=fp.perm))

    def docs(self, source: str) -> dict[str, DocState]:
        """Every document the ledger holds for one source."""
        q = select(documents).where(documents.c.source == source)
        with self.engine.connect() as conn:
            return {r.doc_key: _row_to_doc(r) for r in conn.execute(q)}

    def remove(self, source: str, key: str) -> None:
        with self.engine.begin() as conn:
            for table in (documents, errors, intents):
                conn.execute(delete(table).where(and_(table.c.source == source,
                                                      table.c.doc_key == key)))

    def drop_source(self, source: str) -> None:
        with self.engine.begin() as conn:
            for table in (documents, errors, intents, source_state, pipelines):
                conn.execute(delete(table).where(table.c.source == source))

    # chunking pipeline -------------------------------------------------------------
    def pipeline(self, source: str) -> str | None:
        """The chunking signature the source's indexed chunks were made with (None: unknown,
        e.g. a ledger from before signatures were recorded)."""
        q = select(pipelines.c.signature).where(pipelines.c.source == source)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return row.signature if row else None

    def set_pipeline(self, source: str, signature: str) -> None:
        with self.engine.begin() as conn:
            self._upsert(conn, pipelines, {"source": source}, {"signature": signature})

    def vector_models(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {r.source: r.model for r in conn.execute(select(vector_models))}

    def set_vector_model(self, source: str, model: str) -> None:
        with self.engine.begin() as conn:
            self._upsert(conn, vector_models, {"source": source}, {"model": model})

    # intents -------------------------------------------------------------------
    def mark_intents(self, source: str, keys: Iterable[str]) -> None:
        """Note that these documents' index objects are about to change."""
        rows = [{"source": source, "doc_key": k, "at": time.time()} for k in dict.fromkeys(keys)]
        if rows:
            with self.engine.begin() as conn:
                self._insert_ignore(conn, intents, rows)

    def intents(self, source: str) -> list[str]:
        """Documents whose last index change was interrupted (their ledger row is not to be
        trusted until they are redone)."""
        q = select(intents.c.doc_key).where(intents.c.source == source)
        with self.engine.connect() as conn:
            return [r.doc_key for r in conn.execute(q)]

    # errors ---------------------------------------------------------------------
    def record_error(self, source: str, key: str, reason: str) -> None:
        with self.engine.begin() as conn:
            self._upsert(conn, errors, {"source": source, "doc_key": key},
                         {"error": reason, "at": time.time()})

    def clear_errors(self, source: str, keys: Sequence[str]) -> None:
        """Forget the recorded errors of these documents (one transaction)."""
        with self.engine.begin() as conn:
            for i in range(0, len(keys), 500):
                conn.execute(delete(errors).where(and_(errors.c.source == source,
                                                       errors.c.doc_key.in_(keys[i:i + 500]))))

    def errors(self, source: str, limit: int = 50) -> list[dict[str, Any]]:
        q = (select(errors).where(errors.c.source == source)
             .order_by(errors.c.at.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [{"key": r.doc_key, "error": r.error, "at": r.at} for r in conn.execute(q)]

    # source state -----------------------------------------------------------------
    def source_state(self, source: str) -> SourceState:
        q = select(source_state).where(source_state.c.source == source)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            return SourceState(source)
        return SourceState(source, row.cursor, row.watermark, row.last_start, row.last_end,
                           json.loads(row.last_report) if row.last_report else None)

    def set_source_state(self, source: str, **values: Any) -> None:
        if "last_report" in values and values["last_report"] is not None:
            values["last_report"] = json.dumps(values["last_report"])
        with self.engine.begin() as conn:
            self._upsert(conn, source_state, {"source": source}, values)

    def sources(self) -> list[str]:
        with self.engine.connect() as conn:
            a = {r[0] for r in conn.execute(select(source_state.c.source))}
            b = {r[0] for r in conn.execute(select(documents.c.source).distinct())}
        return sorted(a | b)

    # vector cache -------------------------------------------------------------------
    def cached_vectors(self, model: str, hashes: Iterable[str]) -> dict[str, list[float]]:
        wanted = list(dict.fromkeys(hashes))
        out: dict[str, list[float]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(wanted), 500):
                q = select(embeddings.c.text_hash, embeddings.c.vector).where(and_(
                    embeddings.c.model == model, embeddings.c.text_hash.in_(wanted[i:i + 500])))
                for r in conn.execute(q):
                    out[r.text_hash] = np.frombuffer(r.vector, dtype="<f4").tolist()
        return out

    def cache_vectors(self, model: str, vectors: Mapping[str, Sequence[float]]) -> None:
        if not vectors:
            return
        have = self.cached_vectors(model, vectors)
        rows = [{"model": model, "text_hash": h, "vector": np.asarray(v, dtype="<f4").tobytes()}
                for h, v in vectors.items() if h not in have]
        if rows:  # another process may cache the same text meanwhile: ignore conflicts
            with self.engine.begin() as conn:
                self._insert_ignore(conn, embeddings, rows)

    # helpers ----------------------------------------------------------------------
    def _insert_ignore(self, conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        conn.execute(dialect.insert(table).on_conflict_do_nothing(), rows)

    @staticmethod
    def _upsert(conn: Connection, table: Table, key: dict[str, Any],
                values: dict[str, Any]) -> None:
        cond = and_(*(table.c[k] == v for k, v in key.items()))
        res = conn.execute(update(table).where(cond).values(**values))
        if res.rowcount == 0:
            conn.execute(insert(table).values(**key, **values))
