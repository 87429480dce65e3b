"""The engine: the one place where detect, read, parse, chunk, diff, embed, write, commit meet."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from connectors import Source, SourceError, build_source
from freshrag import canary, metrics
from freshrag.chunk import CHUNKER_VERSION, ChunkSizes, chunk
from freshrag.clean import CLEAN_VERSION
from freshrag.config import Settings
from freshrag.diff import DocDiff, diff
from freshrag.embed import Embedder, check_vectors, make_embedder, vector_model, vectors_for
from freshrag.index import Index, IndexUnavailable, open_index
from freshrag.ledger import DocState, Ledger
from freshrag.lock import LeaseLock, held
from freshrag.model import (
    Candidate,
    Chunk,
    Filters,
    Hit,
    Item,
    Mode,
    SyncReport,
    content_hash,
)
from freshrag.parse import ParseError, Parser
from freshrag.parse_worker import IsolatedParser
from freshrag.readers import (
    READERS_SIG,
    chunking_of,
    meta_hash_of,
    permissions_of,
    read_reporting,
)
from freshrag.retry import retry
from freshrag.trim import trim

log = logging.getLogger("freshrag.engine")
Progress = Callable[[int, int], None]
BATCH_DOCS = 64
BATCH_CHUNKS = 512


@dataclass
class _Pending:
    """A document read, parsed and chunked, waiting for its batch to be embedded and written."""

    item: Item
    hash: str
    meta_hash: str
    chunks: list[Chunk]
    prev: DocState | None
    renamed_from: str | None = None
    diff: DocDiff = field(default_factory=DocDiff)


@dataclass
class _Run:
    """What one sync of one source carries from stage to stage."""

    src: Source
    report: SyncReport
    known: dict[str, Any]
    suspect: set[str]  # interrupted last time: redo in full, never trust the ledger's hash
    rechunk: bool = False  # chunked by another chunker version or sizes: parse everything
    reembed: bool = False  # indexed with another model's vectors: rewrite every chunk
    gone_by_hash: dict[str, list[str]] = field(default_factory=dict)
    renamed: set[str] = field(default_factory=set)
    vanished: list[str] = field(default_factory=list)  # gone between detect and read


class Engine:
    """Owns the ledger, index, embedder and parser of one freshrag home."""

    def __init__(self, settings: Settings, index: Index | None = None,
                 embedder: Embedder | None = None, ledger: Ledger | None = None,
                 parser: Parser | None = None):
        self.settings = settings
        self.ledger = ledger or Ledger(settings.ledger())
        self.embedder: Embedder = embedder or make_embedder(settings.model)
        self._index = index
        self.parser: Parser = parser or IsolatedParser(
            settings.parse.timeout_s,
            options={"drop_boilerplate": settings.parse.drop_boilerplate})
        self._sources: dict[str, Source] = {}
        self._writes_since_optimize = 0
        self.lock_wait_s = 60.0  # how long a sync waits for another one on the same source
        self.lock_lease_s = 30.0
        self._held = threading.local()

    @property
    def index(self) -> Index:
        if self._index is None:
            ic = self.settings.index
            self._index = open_index(ic.url, self.settings.home, collection=ic.collection,
                                     api_key=ic.api_key, grpc_port=ic.grpc_port,
                                     timeout_s=ic.timeout_s,
                                     query_maximum_results=ic.query_maximum_results,
                                     ann=ic.ann())
        return self._index

    def source(self, name: str) -> Source:
        if name not in self._sources:
            src = build_source(self.settings.source(name), self.settings)
            bind = getattr(src, "bind_ledger", None)
            if bind is not None:  # a source with a cursor keeps it in this engine's ledger
                bind(self.ledger)
            self._sources[name] = src
        return self._sources[name]

    def release(self) -> list[str]:
        """Idle for long: stop the parse child and unload the model (each starts again on first
        use) and give their memory back; returns what it did, for the log. The ledger and the
        index stay open. The torch embedder has no release (torch keeps what it freed)."""
        done = []
        close = getattr(self.parser, "close", None)
        if close is not None:
            close()
            done.append("stopped the parse worker")
        unload = getattr(self.embedder, "release", None)
        if unload is not None:
            unload()
            done.append("unloaded the model")
        trim()
        return done

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
        close = getattr(self.parser, "close", None)
        if close is not None:
            close()
        self.ledger.close()

    @contextmanager
    def locked(self, source: str) -> Iterator[LeaseLock]:
        """Hold the source's writer lock (re-entrant within one thread)."""
        locks: dict[str, LeaseLock] = self._held.__dict__.setdefault("locks", {})
        if source in locks:
            yield locks[source]
            return
        with held(self.ledger, source, lease_s=self.lock_lease_s,
                  wait_s=self.lock_wait_s) as lock:
            locks[source] = lock
            try:
                yield lock
            finally:
                del locks[source]

    # search ---------------------------------------------------------------------------------
    def document(self, source: str, key: str, filters: Filters | None = None) -> list[Hit]:
        """A document's chunks as indexed, in the document's current order: chunks kept across
        an edit keep the ordinal they were written with, the ledger knows where they are now.
        With `filters.principals`: only chunks they may read (none: not found, to them)."""
        hits = self.index.get_document(source, key, filters)
        doc = self.ledger.get(source, key)
        if doc is not None:
            first: dict[str, int] = {}
            for n, h in enumerate(doc.chunk_hashes):
                first.setdefault(h, n)
            hits.sort(key=lambda h: (first.get(h.chunk_hash, len(first)), h.ordinal))
        for n, hit in enumerate(hits):
            hit.ordinal = n
        return hits

    def search(self, query: str, k: int = 5, mode: Mode = Mode.hybrid,
               alpha: float | None = None, filters: Filters | None = None,
               vector: list[float] | None = None) -> list[Hit]:
        """`vector`: the query's embedding when the caller has it (the API batches them)."""
        if mode is not Mode.keyword:
            self.check_vectors(filters.source if filters else None)
            if vector is None:
                vector = self.embedder.embed([query])[0]
        # canary documents (one chunk each) are hidden unless asked for: fetch that many more
        extra = 0 if canary.asked_for(filters) else len(canary.enabled(self.settings))
        hits = self.index.search(query, vector, k + extra, mode,
                                 self.settings.index.alpha if alpha is None else alpha, filters)
        return hits if canary.asked_for(filters) else [
            h for h in hits if not canary.is_canary(h.doc_key)][:k]

    def vector_model(self, source: str) -> str:
        return vector_model(self.ledger, self.settings.model.name, source)

    def check_vectors(self, source: str | None = None) -> None:
        check_vectors(self.ledger, self.settings.model.name, self.embedder.model_id, source)

    def tidy_index(self) -> bool:
        """Fold the chunks written since the last time into the index's own indexes (full-text,
        and ANN: built, folded or retrained; freshrag/index/lance_ann.py). Until then they are
        searched exactly. Returns whether anything was pending."""
        if not self._writes_since_optimize:
            return False
        self.index.optimize()
        self._writes_since_optimize = 0
        return True

    # sync -------------------------------------------------------------------------------------
    def sync(self, source_name: str, keys: Sequence[str] | None = None,
             progress: Progress | None = None, observed_at: float | None = None) -> SyncReport:
        """Bring the index in line with the source: all of it (keys=None) or just `keys`.
        Holds the source's lock: a second sync of the same source waits for this one."""
        try:
            with self.locked(source_name) as lock:
                report = self._sync(source_name, keys, progress, observed_at, lock)
        except Exception:
            metrics.sync_failed(source_name)
            raise
        metrics.synced(source_name, report)
        return report

    def _sync(self, source_name: str, keys: Sequence[str] | None, progress: Progress | None,
              observed_at: float | None, lock: LeaseLock) -> SyncReport:
        started = time.time()
        src = self.source(source_name)
        self.ledger.set_source_state(source_name, last_start=started)
        known = self.ledger.fingerprints(source_name)
        suspect = set(self.ledger.intents(source_name))
        signature = self.pipeline_signature(source_name)
        stored = self.ledger.pipeline(source_name)
        vectors_of = self.embedder.model_id
        reembed = bool(known) and self.vector_model(source_name) != vectors_of
        if reembed:  # every chunk again, and no search until all are: never mixed vectors
            keys = None
            self.ledger.set_vector_model(source_name, f"(re-embedding to {vectors_of})")
        elif not known:
            self.ledger.set_vector_model(source_name, vectors_of)
        run = _Run(src, SyncReport(), known, suspect, reembed=reembed,
                   rechunk=reembed or (bool(known)
                                       and chunking_of(stored) != chunking_of(signature)))
        if keys is None:  # suspects first: a SQL scan keeps its cursor state for commit()
            candidates = list(src.candidates(sorted(suspect))) if suspect else []
            candidates += src.scan(known)
            # chunked differently: every document is chunked again; readers captured
            # differently (`permissions` changed): every document's metadata is re-written;
            # embedded by another model: every chunk again
            if known and (stored != signature or run.reembed):
                listed = {c.key for c in candidates}
                candidates += src.candidates(sorted(k for k in known if k not in listed))
        else:
            candidates = list(src.candidates(list(dict.fromkeys([*keys, *sorted(suspect)]))))
            candidates += self._vanished_under(source_name, candidates, known)
        first: dict[str, Candidate] = {}
        for c in candidates:
            first.setdefault(c.key, c)
        candidates = list(first.values())
        self._skipped(source_name, candidates, run.report)
        # a suspect unknown to the ledger: written before a crash, deleted since; only the
        # intent remembers its objects
        gone = [c.key for c in candidates if c.fingerprint is None and c.error is None
                and (c.key in known or c.key in suspect)]
        present = [c for c in candidates if c.fingerprint is not None or c.error is not None]
        if keys is None:
            run.report.unchanged = len(known) - len({c.key for c in candidates} & known.keys())
        run.gone_by_hash = self._hashes_of(source_name, gone)
        batch: list[_Pending] = []
        total = len(present) + len(gone)
        for done, cand in enumerate(present, 1):
            pending = self._prepare(run, cand)
            if pending is not None:
                batch.append(pending)
            if len(batch) >= BATCH_DOCS or sum(len(p.chunks) for p in batch) >= BATCH_CHUNKS:
                self._flush(source_name, batch, run, lock)
                batch = []
            if progress:
                progress(done, total)
        self._flush(source_name, batch, run, lock)
        self._delete_gone(source_name, gone + run.vanished, run, lock, progress, len(present))
        src.commit()
        if keys is None and self.ledger.pipeline(source_name) != signature:
            self.ledger.set_pipeline(source_name, signature)
        if reembed:
            self.ledger.set_vector_model(source_name, vectors_of)
        if self._writes_since_optimize >= 200 or keys is None:
            self.tidy_index()
        run.report.seconds = time.time() - started
        self.ledger.set_source_state(
            source_name, last_end=time.time(), last_report=run.report.to_json(),
            watermark=observed_at if observed_at is not None else started)
        return run.report

    def _delete_gone(self, source: str, gone: list[str], run: _Run, lock: LeaseLock,
                     progress: Progress | None, done: int) -> None:
        """Delete documents that left the source: index first, then the ledger row."""
        lock.check()
        self.ledger.mark_intents(source, gone)
        for n, key in enumerate(gone, done + 1):
            lock.check()
            removed = self._retry(partial(self.index.delete_document, source, key))
            self.ledger.remove(source, key)
            run.report.chunks_deleted += removed
            if key not in run.renamed:
                run.report.deleted += 1
            if progress:
                progress(n, done + len(gone))

    def _skipped(self, source: str, candidates: list[Candidate], report: SyncReport) -> None:
        """Count and list the files detect skipped (a type freshrag does not index). One the
        index holds (indexed under an older rule) is deleted like a file that left."""
        skipped = [c for c in candidates if c.skipped is not None]
        for cand in skipped:
            report.skip(source, cand.key, cand.skipped or "")
        if skipped:  # an error recorded for one of them before it was skipped is void
            self.ledger.clear_errors(source, [c.key for c in skipped])

    def _vanished_under(self, source: str, candidates: list[Candidate],
                        known: dict[str, Any]) -> list[Candidate]:
        """A key that names a deleted folder stands for every document under it."""
        out = []
        for cand in candidates:
            if cand.fingerprint is None and cand.key not in known:
                prefix = cand.key.rstrip("/") + "/"
                out += [Candidate(k, None) for k in known if k.startswith(prefix)]
        return out

    def _hashes_of(self, source: str, keys: Iterable[str]) -> dict[str, list[str]]:
        by_hash: dict[str, list[str]] = {}
        for key, doc in self.ledger.get_many(source, list(keys)).items():
            by_hash.setdefault(doc.content_hash, []).append(key)
        return by_hash

    def _fail(self, source: str, key: str, reason: str, report: SyncReport) -> None:
        log.warning("%s: %s: %s", source, key, reason)
        report.error(source, key, reason)
        self.ledger.record_error(source, key, reason)

    def _prepare(self, run: _Run, cand: Candidate) -> _Pending | None:
        """Read, hash, parse and chunk one candidate; None when there is nothing to write."""
        src, report, renamed, gone_by_hash = run.src, run.report, run.renamed, run.gone_by_hash
        if cand.error is not None:
            self._fail(src.name, cand.key, cand.error, report)
            return None
        try:
            item = read_reporting(src, cand.key, report)
        except SourceError as exc:
            if getattr(exc, "gone", False):  # deleted since the scan: a delete, not a failure
                if cand.key in run.known:
                    run.vanished.append(cand.key)
                return None
            self._fail(src.name, cand.key, str(exc), report)
            return None
        digest = content_hash(item.text if item.text is not None else item.data)
        meta = meta_hash_of(item.metadata, item.readers)
        prev = self.ledger.get(src.name, cand.key)
        if (prev is not None and prev.content_hash == digest and cand.key not in run.suspect
                and not run.rechunk):
            if prev.meta_hash != meta:
                ids = list(self._retry(lambda: self.index.ids_for(src.name, cand.key)))
                self._retry(lambda: self.index.update_metadata(
                    ids, item.metadata, item.modified_at, item.readers))
                report.updated += 1
            else:
                report.touched += 1
            prev.fingerprint, prev.meta_hash = item.fingerprint, meta
            self.ledger.put(prev)
            return None
        renamed_from = None
        if prev is None and gone_by_hash.get(digest):
            renamed_from = gone_by_hash[digest].pop(0)
            renamed.add(renamed_from)
        try:
            elements = self.parser.parse(item)
            chunks = chunk(elements, self.embedder.count_tokens, self.chunk_sizes())
        except ParseError as exc:
            if renamed_from:
                renamed.discard(renamed_from)
            self._fail(src.name, cand.key, str(exc), report)
            return None
        return _Pending(item, digest, meta, chunks, prev, renamed_from)

    def pipeline_signature(self, source: str | None = None) -> str:
        """What the chunks depend on besides the content: chunker version, configured sizes,
        boilerplate cleaning; then how the source's readers are captured (a change there is a
        metadata re-write, see chunking_of). Read from settings, so it costs no model load."""
        c, p = self.settings.chunk, self.settings.parse
        clean = f"clean {CLEAN_VERSION}" if p.drop_boilerplate else "clean off"
        sig = f"chunk {CHUNKER_VERSION} {c.min_tokens}/{c.target_tokens}/{c.max_tokens}; {clean}"
        mode = permissions_of(self.settings, source) if source is not None else "none"
        return sig if mode == "none" else f"{sig}{READERS_SIG}{mode}"

    def chunk_sizes(self) -> ChunkSizes:
        c = self.settings.chunk
        limit = min(c.max_tokens, self.embedder.max_tokens)
        return ChunkSizes(min(c.min_tokens, limit // 2), min(c.target_tokens, limit), limit)

    def _flush(self, source: str, batch: list[_Pending], run: _Run, lock: LeaseLock) -> None:
        """Diff, embed the misses, write new objects, delete stale ones, commit the ledger."""
        report = run.report
        if not batch:
            return
        lock.check()
        now = time.time()
        wanted: dict[str, str] = {}  # chunk hash -> text, for records that must be written
        for p in batch:
            existing = self._retry(partial(self.index.ids_for, source, p.item.key))
            changed = p.prev is None or p.prev.meta_hash != p.meta_hash
            p.diff = diff(source, p.item, p.chunks, existing, changed, run.reembed, now)
            wanted.update((r.chunk_hash, r.text) for r in p.diff.records)
        vectors = vectors_for(self.embedder, self.ledger, wanted, report)
        lock.check()
        self.ledger.mark_intents(source, [p.item.key for p in batch])
        records = [r for p in batch for r in p.diff.records]
        for r in records:
            r.vector = vectors[r.chunk_hash]
        for i in range(0, len(records), BATCH_CHUNKS):
            part = records[i:i + BATCH_CHUNKS]
            self._retry(partial(self.index.upsert, part))
        self._writes_since_optimize += len(records)
        for p in batch:
            if p.diff.kept:
                self._retry(partial(self.index.update_metadata, p.diff.kept, p.item.metadata,
                                    p.item.modified_at, p.item.readers))
        stale = [i for p in batch for i in p.diff.stale]
        if stale:
            self._retry(partial(self.index.delete, stale))
        self.ledger.put_many([DocState(
            source, p.item.key, p.item.fingerprint, p.hash, [c.hash for c in p.chunks],
            p.item.modified_at, now, p.meta_hash) for p in batch])
        for p in batch:
            report.written += len(p.diff.records)
            report.chunks_deleted += len(p.diff.stale)
            if p.renamed_from:
                report.renamed += 1
            elif p.prev is None:
                report.added += 1
            else:
                report.updated += 1

    def _retry(self, fn: Callable[[], Any]) -> Any:
        # IndexMisconfigured is neither: a refused setting propagates at once, never retried.
        return retry(fn, (IndexUnavailable, OSError), what="index")
