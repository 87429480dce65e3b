"""`freshrag verify`: compare sources, ledger and index; `--repair` replays the engine on drift."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from connectors import Source, SourceError
from freshrag.chunk import chunk
from freshrag.ledger import DocState
from freshrag.model import Candidate, chunk_id, content_hash
from freshrag.parse import ParseError

KINDS = ("missing", "orphaned", "stale", "duplicates")


@dataclass
class Drift:
    """What verify found; each item names its source and key."""

    missing: list[dict[str, Any]] = field(default_factory=list)
    orphaned: list[dict[str, Any]] = field(default_factory=list)
    stale: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    unindexable: list[dict[str, Any]] = field(default_factory=list)  # reported by sync/status

    @property
    def ok(self) -> bool:
        return not any(getattr(self, kind) for kind in KINDS)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **{kind: getattr(self, kind) for kind in KINDS}}

    def merge(self, other: Drift) -> None:
        for kind in (*KINDS, "unindexable"):
            getattr(self, kind).extend(getattr(other, kind))

    def keys(self, source: str, *kinds: str) -> list[str]:
        found = [i["key"] for k in kinds for i in getattr(self, k) if i["source"] == source]
        return list(dict.fromkeys(found))


def inventory(src: Source, expected: Iterable[str]) -> dict[str, Candidate]:
    """Every item the source holds now: its fingerprint, or the error that keeps it out.
    A folder is walked (stat only); a table is compared with `expected` by the reconcile's
    range counts, then the present keys are fingerprinted."""
    from connectors.sql import SqlSource

    if isinstance(src, SqlSource):
        from connectors.sql_reconcile import reconcile

        src.resolve()
        wanted = set(expected)
        gone, extra, _ = reconcile(src, wanted)
        cands = src.candidates(sorted((wanted - set(gone)) | set(extra)))
    else:
        cands = src.scan({})
    return {c.key: c for c in cands if c.fingerprint is not None or c.error is not None}


def numbered_ids(source: str, key: str, hashes: list[str]) -> dict[str, str]:
    """The deterministic ids of a document's chunks (id -> chunk hash)."""
    seen: dict[str, int] = {}
    out = {}
    for h in hashes:
        n = seen.get(h, 0)
        seen[h] = n + 1
        out[chunk_id(source, key, h, n)] = h
    return out


def follows_scheme(source: str, key: str, oid: str, chunk_hash: str, bound: int) -> bool:
    return any(chunk_id(source, key, chunk_hash, n) == oid for n in range(bound))


class Verifier:
    """Verify one engine's sources; `deep` re-parses every document instead of trusting the
    ledger's chunk hashes for files whose fingerprint is unchanged."""

    def __init__(self, engine: Any, deep: bool = False):
        self.engine = engine
        self.deep = deep
        self.ids: dict[tuple[str, str], list[str]] = {}  # duplicate ids found, for repair

    def verify(self, sources: list[str]) -> Drift:
        drift = Drift()
        for name in sources:
            with self.engine.locked(name):  # a running sync of the source finishes first
                drift.merge(self._source(name))
        return drift

    def _source(self, name: str) -> Drift:
        engine, drift = self.engine, Drift()
        src = engine.source(name)
        in_index: dict[str, int] = engine.index.documents(name)
        ledger_docs: dict[str, DocState] = engine.ledger.docs(name)
        suspect = set(engine.ledger.intents(name))
        present = inventory(src, set(in_index) | set(ledger_docs))
        for key, count in sorted(in_index.items()):
            if key not in present:
                drift.orphaned.append({"source": name, "key": key, "chunks": count})
        for key, cand in sorted(present.items()):
            if cand.error is not None:
                drift.unindexable.append({"source": name, "key": key, "error": cand.error})
                continue
            prev = None if key in suspect else ledger_docs.get(key)
            expected, reason = self._expected(src, cand, prev)
            if isinstance(expected, str):
                drift.unindexable.append({"source": name, "key": key, "error": expected})
                continue
            self._compare(drift, name, key, expected, in_index.get(key, 0), reason)
        return drift

    def _expected(self, src: Source, cand: Candidate, prev: DocState | None
                  ) -> tuple[list[str] | str, str]:
        """The chunk hashes the document's current content makes (or why it has none), and
        what drift there means."""
        changed = "the source changed since the last sync"
        if not self.deep and prev is not None and prev.fingerprint == cand.fingerprint:
            return prev.chunk_hashes, "the index differs from the ledger"
        try:
            item = src.read(cand.key)
        except SourceError as exc:
            return str(exc), changed
        digest = content_hash(item.text if item.text is not None else item.data)
        if not self.deep and prev is not None and prev.content_hash == digest:
            return prev.chunk_hashes, "the index differs from the ledger"
        try:
            elements = self.engine.parser.parse(item)
        except ParseError as exc:
            return str(exc), changed
        chunks = chunk(elements, self.engine.embedder.count_tokens, self.engine.chunk_sizes())
        hashes = [c.hash for c in chunks]
        same = prev is not None and prev.chunk_hashes == hashes
        return hashes, "the index differs from the ledger" if same else changed

    def _compare(self, drift: Drift, source: str, key: str, expected: list[str], rows: int,
                 reason: str) -> None:
        want = numbered_ids(source, key, expected)
        have: dict[str, str] = self.engine.index.ids_for(source, key) if rows else {}
        item = {"source": source, "key": key}
        if not have:
            if want:
                drift.missing.append({**item, "chunks": len(want), "reason": reason})
            return
        extra = [i for i in have if i not in want]
        bound = max(len(expected), 256)
        dups = [i for i in extra if have[i] in set(expected)
                or not follows_scheme(source, key, i, have[i], bound)]
        same_id = rows - len(have)  # two objects under one id (an embedded-index fault)
        if dups or same_id > 0:
            self.ids[(source, key)] = dups if same_id <= 0 else list(have)
            drift.duplicates.append({**item, "ids": sorted(dups),
                                     "copies": len(dups) + max(same_id, 0)})
        stale = [i for i in extra if i not in dups]
        absent = [i for i in want if i not in have]
        if stale or absent:
            drift.stale.append({**item, "stale_chunks": len(stale),
                                "missing_chunks": len(absent), "reason": reason})

    def repair(self, drift: Drift) -> list[dict[str, Any]]:
        """Delete orphans and extra copies, then replay the engine on exactly the affected
        documents (their ledger rows are marked untrusted, so they are read again). Returns
        what was done: one entry per kind of drift and key, with the action taken."""
        engine = self.engine
        done: list[dict[str, Any]] = []

        def objects(n: int) -> str:
            return f"deleted {n} object{'' if n == 1 else 's'}"

        sources = dict.fromkeys(i["source"] for k in KINDS for i in getattr(drift, k))
        for name in sources:
            with engine.locked(name):
                for key in drift.keys(name, "orphaned"):
                    removed = engine.index.delete_document(name, key)
                    engine.ledger.remove(name, key)
                    done.append({"kind": "orphaned", "source": name, "key": key,
                                 "action": objects(removed)})
                copies: dict[str, int] = {}
                for key in drift.keys(name, "duplicates"):
                    ids = self.ids.get((name, key), [])
                    engine.index.delete(ids)
                    copies[key] = len(ids)
                keys = drift.keys(name, "missing", "stale", "duplicates")
                if not keys:
                    continue
                engine.ledger.mark_intents(name, keys)
                report = engine.sync(name, keys=keys)
                failed = {e["key"]: e["error"] for e in report.errors}
                for kind in ("missing", "stale", "duplicates"):
                    for key in drift.keys(name, kind):
                        action = (f"{objects(copies.get(key, 0))}, re-indexed"
                                  if kind == "duplicates" else "re-indexed")
                        if key in failed:
                            action += f" (failed: {failed[key]})"
                        done.append({"kind": kind, "source": name, "key": key,
                                     "action": action})
        return done
