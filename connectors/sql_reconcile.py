"""Hard-delete detection for the SQL source: per-range key counts and key hashes vs the ledger,
drilled down."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from connectors import sql_util as su

FANOUT = 16  # ranges per count query
LEAF = 256  # at most this many ledger keys: compare the key lists themselves

Key = tuple[Any, ...]
Part = list[tuple[Key, str]]  # (typed key, doc key), sorted by typed key


def reconcile(src: Any, expected: Iterable[str]) -> tuple[list[str], list[str], int]:
    """(keys gone from the table, keys in the table but not expected, queries run).

    `expected` are the doc keys the index should hold. Ranges are cut at expected keys; one
    query counts rows and sums a weight per range (a single integer key itself, else a 32-bit
    hash of the key's text, so a delete and a missed insert in one range do not cancel out),
    and only ranges that differ are split again, down to LEAF keys, where the keys are listed.
    A key is reported gone only after a lookup by equality confirms it, so a collation that
    orders keys differently from Python costs extra queries, never a wrong delete."""
    kinds = src.key_kinds
    part: Part = []
    undecodable: list[str] = []
    for key in expected:
        try:
            part.append((su.decode_key(key, kinds), key))
        except ValueError:
            undecodable.append(key)
    part.sort(key=lambda p: p[0])
    walk = _Walk(src, len(kinds) == 1 and kinds[0] is int)
    walk.node(None, None, part)
    gone = walk.confirm_gone(walk.missing)
    return sorted(undecodable) + gone, sorted(walk.extra), walk.queries


class _Walk:
    def __init__(self, src: Any, integer: bool):
        self.src = src
        self.integer = integer
        self.missing: list[tuple[Key, str]] = []
        self.extra: set[str] = set()
        self.queries = 0

    def node(self, lo: Key | None, hi: Key | None, part: Part) -> None:
        if len(part) <= LEAF:
            self.leaf(lo, hi, part)
            return
        step = math.ceil(len(part) / FANOUT)
        subparts = [part[i:i + step] for i in range(0, len(part), step)]
        edges: list[Key | None] = [lo, *(sp[0][0] for sp in subparts[1:]), hi]
        counts = self.counts(lo, hi, edges)
        for i, sp in enumerate(subparts):
            want = (len(sp), sum(k[0] if self.integer else key_hash(k) for k, _ in sp))
            if counts[i] != want:
                self.node(edges[i], edges[i + 1], sp)

    def counts(self, lo: Key | None, hi: Key | None, edges: Sequence[Key | None]
               ) -> list[tuple[int, int]]:
        src, cols = self.src, self.src.key_cols
        conds = [su.in_range(cols, edges[i], edges[i + 1]) for i in range(len(edges) - 1)]
        weight = cols[0] if self.integer else hash_sql(src.db.dialect.name, cols)
        exprs = [sa.func.sum(sa.case((c, 1), else_=0)) for c in conds]
        exprs += [sa.func.sum(sa.case((c, weight), else_=0)) for c in conds]
        stmt = sa.select(*exprs).select_from(src.rel).where(
            sa.and_(su.in_range(cols, lo, hi), src.live()))
        row = src.run("reconciling", lambda c: src.execute(c, stmt))[0]
        self.queries += 1
        n = len(conds)
        return [(int(row[i] or 0), int(row[n + i] or 0)) for i in range(n)]

    def leaf(self, lo: Key | None, hi: Key | None, part: Part) -> None:
        src = self.src
        cols = [src.rel.c[k] for k in src.opts.key]
        if src.opts.deleted:
            cols.append(src.rel.c[src.opts.deleted])
        stmt = sa.select(*cols).where(su.in_range(src.key_cols, lo, hi))
        rows = src.run("reconciling", lambda c: src.execute(c, stmt))
        self.queries += 1
        present = {src.key_of(r) for r in rows if not src.row_deleted(r)}
        have = {k for _, k in part}
        self.missing += [(t, k) for t, k in part if k not in present]
        self.extra |= present - have

    def confirm_gone(self, missing: list[tuple[Key, str]]) -> list[str]:
        """Of these, the keys with no live row, looked up by equality."""
        if not missing:
            return []
        src = self.src
        cols = [src.rel.c[k] for k in src.opts.key]
        if src.opts.deleted:
            cols.append(src.rel.c[src.opts.deleted])
        rows = src.fetch_keys([t for t, _ in missing], sa.select(*cols))
        self.queries += 1
        alive = {src.key_of(r) for r in rows if not src.row_deleted(r)}
        return sorted(k for _, k in missing if k not in alive)


SEP = "\x1f"


def key_hash(values: Sequence[Any]) -> int:
    """32 bits of md5 over the key's column texts (what hash_sql computes in the database)."""
    text = SEP.join(str(v) for v in values)
    return int(hashlib.md5(text.encode("utf-8", "surrogateescape")).hexdigest()[:8], 16)


def hash_sql(dialect: str, cols: Sequence[Any]) -> Any:
    """key_hash in SQL. Where the database renders a key type differently from Python (dates,
    say), every range differs and the walk lists keys: slower, never wrong."""
    text: Any = sa.cast(cols[0], sa.String)
    for col in cols[1:]:
        text = text + sa.literal(SEP) + sa.cast(col, sa.String)
    if dialect == "sqlite":  # registered on each connection by connectors.sql_options
        return sa.func.freshrag_key_hash(text)
    head = sa.func.substr(sa.func.md5(text), 1, 8)
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import BIT

        return sa.cast(sa.cast(sa.literal("x") + head, BIT(32)), sa.BigInteger)
    return sa.cast(sa.func.conv(head, 16, 10), sa.Integer)  # MySQL/MariaDB
