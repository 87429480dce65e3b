"""Permissions: revoke → enforced under `freshrag watch` (a `chmod o-r`, an UPDATE of a readers
column) seen through `/search` of `freshrag serve`, and the cost of the readers filter on
search latency, side by side with unfiltered search."""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.api_load import wait_ready
from bench.common import dist, launch, stop, write
from bench.freshness import pg_database, services, until
from freshrag.index.lancedb import LanceIndex
from freshrag.model import EVERYONE, Record
from tests.corpus import sentence
from tests.e2e.userpath import free_port

CLIENTS = """
[[api.clients]]
name = "ops"
key = "key-ops"
admin = true

[[api.clients]]
name = "guest"
key = "key-guest"

[[api.clients]]
name = "bob"
key = "key-bob"
principals = ["uid:1002", "gid:2001"]
"""
OPS = {"X-API-Key": "key-ops"}

# Queries of the filter-cost figure (its index holds random vectors and words, not real text).
QUERIES = ["quarterly budget review", "security incident report", "warehouse shipment delay",
           "customer contract renewal", "database backup policy", "training schedule",
           "supplier payment invoice", "network access change", "release quality process"]


class As:
    """Keyword `POST /search` of the running API as one client: does a token show?"""

    def __init__(self, url: str, key: str, source: str):
        import httpx

        self.url, self.source = url, source
        self.http = httpx.Client(timeout=10, headers={"X-API-Key": key})

    def sees(self, token: str) -> bool:
        r = self.http.post(self.url + "/search", json={
            "query": token, "mode": "keyword", "k": 3, "filters": {"source": self.source}})
        r.raise_for_status()
        return any(token in h["text"] for h in r.json()["hits"])


def file_revokes(trials: int) -> dict[str, Any]:
    """`chmod o-r` on a world-readable file until the guest client no longer finds it."""
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        os.chmod(tmp, 0o755)
        page = tmp / "docs" / "shared.md"
        write(page, "# Shared\n\nThe kestrelfigures for this quarter are final.\n")
        os.chown(page, 1001, 2001)
        os.chmod(page, 0o644)
        os.chmod(page.parent, 0o755)
        config = (f'[[sources]]\nname = "docs"\ntype = "folder"\npath = "{page.parent}"\n'
                  'permissions = "posix"\n' + CLIENTS)
        with services(tmp, config, ("--record", "off"), OPS) as url:
            guest = As(url, "key-guest", "docs")
            until(lambda: guest.sees("kestrelfigures"), timeout=120)
            revokes = []
            for _ in range(trials):
                start = time.perf_counter()
                os.chmod(page, 0o640)  # chmod o-r
                until(lambda: not guest.sees("kestrelfigures"))
                revokes.append(time.perf_counter() - start)
                os.chmod(page, 0o644)
                until(lambda: guest.sees("kestrelfigures"))
    return {"revoke_chmod_s": dist(revokes)}


def pg_revokes(trials: int) -> dict[str, Any]:
    """An UPDATE of a row's readers column (notify) until bob no longer finds the row."""
    import sqlalchemy as sa

    with pg_database() as url, tempfile.TemporaryDirectory() as t:
        db = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with db.connect() as c:
            c.execute(sa.text("ALTER TABLE tickets ADD COLUMN readers text "
                              "NOT NULL DEFAULT 'everyone'"))
        config = (f'[[sources]]\nname = "tickets"\ntype = "sql"\nurl = "{url}"\n'
                  'table = "tickets"\nkey = "id"\ntext = "{title}\\n\\n{body}"\n'
                  'cursor = "updated_at"\nnotify = true\npermissions = "readers"\n' + CLIENTS)
        with services(Path(t), config, ("--record", "off"), OPS) as api:
            bob = As(api, "key-bob", "tickets")
            until(lambda: bob.sees("toner"), timeout=120)
            until(lambda: "listening for notifications" in (Path(t) / "watch.log").read_text(),
                  timeout=60)
            revokes = []
            with db.connect() as c:
                for n in range(trials):
                    row = n % 50
                    c.execute(sa.text("UPDATE tickets SET body = :b, updated_at = "
                                      "clock_timestamp() WHERE id = :i"),
                              {"b": f"Printer {row} says zq{row}mark.", "i": row})
                    until(lambda row=row: bob.sees(f"zq{row}mark"))
                    start = time.perf_counter()
                    c.execute(sa.text("UPDATE tickets SET readers = 'uid:1001', updated_at = "
                                      "clock_timestamp() WHERE id = :i"), {"i": row})
                    until(lambda row=row: not bob.sees(f"zq{row}mark"))
                    revokes.append(time.perf_counter() - start)
                    c.execute(sa.text("UPDATE tickets SET readers = 'everyone', updated_at = "
                                      "clock_timestamp() WHERE id = :i"), {"i": row})
        db.dispose()
    return {"revoke_pg_readers_s": dist(revokes)}


READERS = [[EVERYONE], ["uid:1001"], ["uid:1002"], ["gid:2001"], ["uid:1003", "gid:2002"], []]


def fill(home: Path, chunks: int, dim: int) -> None:
    """Harness: `chunks` random unit vectors with text, each with readers drawn from READERS
    (bob, `uid:1002` + `gid:2001`, may read about half)."""
    index = LanceIndex(home / "index")
    rng = random.Random(5)
    vecs = np.random.default_rng(5).standard_normal((chunks, dim)).astype("float32")
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    now = time.time()
    for start in range(0, chunks, 10_000):
        index.upsert([Record(id=f"{i:08d}", vector=vecs[i].tolist(),
                             text=sentence(rng) + " " + sentence(rng), source="docs",
                             doc_key=f"doc{i // 20}.md", chunk_hash=f"{i:064d}",
                             ordinal=i % 20, title="", location="", page=None,
                             source_modified_at=now, indexed_at=now,
                             readers=list(READERS[(i // 20) % len(READERS)]))
                      for i in range(start, min(start + 10_000, chunks))])
    index.optimize()
    index.close()


def filter_cost(embedder: Any, chunks: int, rounds: int) -> dict[str, Any]:
    """`POST /search` of `freshrag serve` as the admin (no filter) and as bob (the readers
    filter), one request after the other, every mode; the same queries."""
    import httpx

    with tempfile.TemporaryDirectory() as t:
        home = Path(t) / "home"
        fill(home, chunks, embedder.dim)
        config = Path(t) / "freshrag.toml"
        config.write_text(f'home = "{home}"\n' + CLIENTS)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc: subprocess.Popen[bytes] = launch(config, "serve", "--port", str(port))
        out: dict[str, Any] = {"chunks": chunks}
        try:
            wait_ready(url, proc, headers=OPS)
            with httpx.Client(timeout=30) as http:
                for mode in ("hybrid", "vector", "keyword"):
                    lat: dict[str, list[float]] = {"admin": [], "bob": []}
                    for i in range(rounds + 5):
                        for who, key in (("admin", "key-ops"), ("bob", "key-bob")):
                            body = {"query": QUERIES[i % len(QUERIES)], "k": 10, "mode": mode}
                            start = time.perf_counter()
                            r = http.post(url + "/search", json=body,
                                          headers={"X-API-Key": key})
                            r.raise_for_status()
                            if i >= 5:  # the first five warm up
                                lat[who].append((time.perf_counter() - start) * 1000)
                    a, b = dist(lat["admin"]), dist(lat["bob"])
                    out[mode] = {"unfiltered_p50_ms": round(a["p50"], 1),
                                 "unfiltered_p95_ms": round(a["p95"], 1),
                                 "filtered_p50_ms": round(b["p50"], 1),
                                 "filtered_p95_ms": round(b["p95"], 1),
                                 "ratio_p50": round(b["p50"] / a["p50"], 2)}
        finally:
            stop(proc)
    out["measured"] = ("product: POST /search of `freshrag serve` as an admin client and as a "
                       "client with principals; harness: the index filled with random vectors "
                       "and readers by the bench")
    return out


def run(embedder: Any, trials: int, chunks: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, fn, args in (("revoke_chmod_s", file_revokes, (trials,)),
                           ("revoke_pg_readers_s", pg_revokes, (trials,)),
                           ("filter_cost", filter_cost, (embedder, chunks, max(20, trials)))):
        try:
            got = fn(*args)  # type: ignore[operator]
            out.update(got if name != "filter_cost" else {"filter_cost": got})
        except Exception as exc:  # reported in the JSON, the other figures still run
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
