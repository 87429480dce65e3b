"""An attacker's view of the API: random owners, modes and clients, every route of the app; no
hit, document, chunk or count ever reaches a client who may not read it (embedded index and
the Weaviate fake)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Mount, Route

from freshrag.api import create_app
from freshrag.api.settings import ApiSettings
from freshrag.config_api import ApiConfig, ClientConfig
from freshrag.embed import SentenceTransformerEmbedder
from freshrag.engine import Engine
from tests.conftest import folder_settings

# One unique word per file: a response that contains it shows (part of) that file.
WORDS = ["walrus", "quokka", "narwhal", "axolotl", "pangolin", "capybara", "okapi", "tapir"]
FILES = {f"{'team/' if i % 2 else ''}f{i}.md":
         f"# Note {w}\n\nThe {w} report covers budget planning for the {w} project. "
         f"Every {w} figure is reviewed by the finance group before the quarter ends.\n"
         for i, w in enumerate(WORDS)}
UIDS, GIDS = (1001, 1002), (2001, 2002)
# Modes whose owner ⊇ group ⊇ other read bits nest: for these the readers are exactly the
# owner (r), the group (r) and everyone (r for all). Others (0o604, 0o044) are readable by
# users no principal names, and indexed conservatively (connectors/permissions.py).
MODES = (0o644, 0o640, 0o600, 0o444, 0o440, 0o400, 0o000)
PRINCIPALS = ("uid:1001", "uid:1002", "gid:2001", "gid:2002")
HEADER = "X-Forwarded-Principals"
GATEWAY_KEY = "key-gateway"


def clients() -> list[ClientConfig]:
    """Every subset of PRINCIPALS as a client, plus an admin and a gateway."""
    out = [ClientConfig(name="root", key="key-root", admin=True),
           ClientConfig(name="gw", key=GATEWAY_KEY, gateway=True, principals=["uid:1001"])]
    for bits in range(1 << len(PRINCIPALS)):
        ps = [p for n, p in enumerate(PRINCIPALS) if bits >> n & 1]
        out.append(ClientConfig(name=f"c{bits}", key=f"key-c{bits}", principals=ps))
    return out


def readers(uid: int, gid: int, mode: int) -> set[str]:
    out = set()
    if mode & 0o400:
        out.add(f"uid:{uid}")
    if mode & 0o040:
        out.add(f"gid:{gid}")
    if mode & 0o004:
        out.add("everyone")
    return out


@dataclass
class Served:
    client: TestClient
    engine: Engine
    folder: Path
    applied: dict[str, tuple[int, int, int]]
    guarded: list[logging.LogRecord]


class _Collect(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]):
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


def _serve(tmp: Path, embedder: SentenceTransformerEmbedder, backend: str,
           fake: Any = None) -> Iterator[Served]:
    folder = tmp / "docs"
    (folder / "team").mkdir(parents=True)
    for key, text in FILES.items():
        (folder / key).write_text(text, encoding="utf-8")
    for d in (tmp, folder, folder / "team"):
        os.chmod(d, 0o755)
    settings = folder_settings(tmp / "home", folder, permissions="posix")
    settings.api = ApiConfig(clients=clients(), trusted_principal_header=HEADER)
    if backend == "weaviate":
        settings.index.url = fake.url
        settings.index.grpc_port = fake.grpc_port
        settings.index.collection = "Attack"
    engine = Engine(settings, embedder=embedder)
    for key in FILES:
        os.chown(folder / key, 1001, 2001)
        os.chmod(folder / key, 0o644)
    report = engine.sync("docs")
    assert report.failed == 0, report.errors
    # one chunk per file: "k readable hits" below counts files
    assert engine.index.documents("docs") == dict.fromkeys(FILES, 1)
    app = create_app(settings, engine=engine, api=ApiSettings(freshness_ttl_ms=0))
    # the API's own check after the index query (Caller.guard) logs what the index let through
    errors: list[logging.LogRecord] = []
    handler = _Collect(errors)
    logging.getLogger("freshrag.api").addHandler(handler)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Served(client, engine, folder, {k: (1001, 2001, 0o644) for k in FILES}, errors)
    finally:
        logging.getLogger("freshrag.api").removeHandler(handler)
        engine.close()


@pytest.fixture(scope="module", params=["embedded", "weaviate"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           embedder: SentenceTransformerEmbedder) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp(f"attack-{request.param}")
    if request.param == "weaviate":
        from tests.fakes.weaviate_fake import FakeWeaviate

        fake = FakeWeaviate().start()
        try:
            yield from _serve(tmp, embedder, "weaviate", fake)
        finally:
            fake.stop()
    else:
        yield from _serve(tmp, embedder, "embedded")


@dataclass(frozen=True)
class Ask:
    """One attacker request context: who, and what it sends."""

    name: str
    headers: dict[str, str]
    principals: frozenset[str] | None  # None: admin


def ask_for(name: str, header: tuple[str, ...] | None) -> Ask:
    if name == "root":
        return Ask(name, {"X-API-Key": "key-root"}, None)
    if name == "gw":
        if header is None:  # a gateway without the header acts as itself
            return Ask(name, {"Authorization": f"Bearer {GATEWAY_KEY}"}, frozenset({"uid:1001"}))
        return Ask(name, {"Authorization": f"Bearer {GATEWAY_KEY}", HEADER: ", ".join(header)},
                   frozenset(header))
    bits = int(name[1:])
    ps = frozenset(p for n, p in enumerate(PRINCIPALS) if bits >> n & 1)
    # a header from a client that is not a gateway is never trusted
    extra = {HEADER: ", ".join(header)} if header else {}
    return Ask(name, {"X-API-Key": f"key-{name}", **extra}, ps)


def visible(served: Served, ask: Ask) -> set[str]:
    if ask.principals is None:
        return set(FILES)
    mine = ask.principals | {"everyone"}
    return {k for k, (u, g, m) in served.applied.items() if readers(u, g, m) & mine}


def words_in(text: str) -> set[str]:
    low = text.lower()
    return {w for w in WORDS if re.search(rf"\b{w}\b", low)}


def word_of(key: str) -> str:
    return WORDS[int(key.split("f")[-1].split(".")[0])]


def check_no_leak(served: Served, ask: Ask, text: str, where: str) -> None:
    allowed = {word_of(k) for k in visible(served, ask)}
    leaked = words_in(text) - allowed
    assert not leaked, f"{where} showed {sorted(leaked)} to {ask.name}: {text[:300]}"


# What each route is, and how an attacker exercises it. A route the app serves that is not
# here fails test_every_route_is_exercised: a new endpoint needs its enforcement check.
def _search_post(c: TestClient, a: Ask, q: str, mode: str, k: int, f: dict[str, Any]) -> Any:
    body: dict[str, Any] = {"query": q, "mode": mode, "k": k}
    if f:
        body["filters"] = f
    return c.post("/search", json=body, headers=a.headers)


def _search_get(c: TestClient, a: Ask, q: str, mode: str, k: int, f: dict[str, Any]) -> Any:
    params: dict[str, Any] = {"q": q, "mode": mode, "k": k}
    params.update({n: v for n, v in f.items() if n in ("source", "doc_key_prefix")})
    return c.get("/search", params=params, headers=a.headers)


STATIC = {"/", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/health"}
ROUTES = {"/search", "/status", "/ready", "/metrics", "/documents/{source}/{key:path}",
          "/docs-assets", *STATIC}


def app_routes(app: Any) -> set[str]:
    out = set()
    for r in app.routes:
        if isinstance(r, APIRoute | Route | Mount):
            out.add(r.path)
    return out


def test_every_route_is_exercised(served: Served) -> None:
    unknown = app_routes(served.client.app) - ROUTES
    assert not unknown, f"routes without an enforcement check in this test: {sorted(unknown)}"


def apply(served: Served, perms: dict[str, tuple[int, int, int]]) -> None:
    for key, (uid, gid, mode) in perms.items():
        path = served.folder / key
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    report = served.engine.sync("docs")
    assert report.failed == 0, report.errors
    assert report.embedded == 0, "a permission change embedded chunks"
    served.applied = dict(perms)


perm_st = st.tuples(st.sampled_from(UIDS), st.sampled_from(GIDS), st.sampled_from(MODES))
names = ["root", "gw", *(f"c{b}" for b in range(1 << len(PRINCIPALS)))]
filters_st = st.fixed_dictionaries({}, optional={
    "source": st.just("docs"),
    "doc_key_prefix": st.sampled_from(["team/", "f", "team/f1", "zzz"]),
    "metadata": st.dictionaries(st.sampled_from(["readers", "owner", "title"]),
                                st.sampled_from(["everyone", "uid:1001", "x"]), max_size=1)})


@settings(max_examples=25, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(perms=st.fixed_dictionaries({k: perm_st for k in FILES}),
       who=st.lists(st.sampled_from(names), min_size=1, max_size=4, unique=True),
       header=st.none() | st.lists(st.sampled_from([*PRINCIPALS, "everyone", "uid:0"]),
                                   max_size=3).map(tuple),
       query=st.sampled_from(WORDS) | st.sampled_from(["budget planning", "finance group"]),
       mode=st.sampled_from(["hybrid", "vector", "keyword"]),
       k=st.integers(1, 20), filters=filters_st)
def test_no_route_shows_what_the_caller_may_not_read(
        served: Served, perms: dict[str, tuple[int, int, int]], who: list[str],
        header: tuple[str, ...] | None, query: str, mode: str, k: int,
        filters: dict[str, Any]) -> None:
    apply(served, perms)
    c = served.client
    for name in who:
        ask = ask_for(name, header)
        allowed = visible(served, ask)
        for send in (_search_post, _search_get):
            res = send(c, ask, query, mode, k, filters)
            assert res.status_code == 200, res.text
            check_no_leak(served, ask, res.text, f"{send.__name__} {mode}")
            hits = res.json()["hits"]
            assert {h["doc_key"] for h in hits} <= allowed
            if mode == "vector" and not filters:
                # enforced inside the query: up to k readable hits, never starved by others
                assert len(hits) == min(k, len(allowed)), (len(hits), k, sorted(allowed))
            for fresh in res.json()["freshness"].values():
                if ask.principals is not None:
                    assert fresh["pending"] is None and fresh["failed"] is None
        for key in FILES:
            res = c.get(f"/documents/docs/{key}", headers=ask.headers)
            if key in allowed:
                assert res.status_code == 200, (key, res.text)
                assert res.json()["chunks"]
            else:
                assert res.status_code == 404, (ask.name, key, res.text)
                assert res.json() == {"detail": f"no document {key!r} in source 'docs'"}
            check_no_leak(served, ask, res.text, f"/documents/docs/{key}")
        status = c.get("/status", headers=ask.headers)
        assert status.status_code == 200
        for row in status.json()["sources"]:
            if ask.principals is not None:
                assert (row["documents"], row["chunks"], row["last_report"],
                        row["errors"]) == (None, None, None, [])
                assert row["freshness"]["pending"] is None
                assert row["freshness"]["watermark"] is not None  # freshness still works
            else:
                assert row["documents"] == len(FILES)
        metrics = c.get("/metrics", headers=ask.headers)
        assert metrics.status_code == (200 if ask.principals is None else 403)
        for path in ("/ready", *STATIC, "/docs-assets/swagger-ui.css"):
            res = c.get(path, headers=ask.headers)
            assert res.status_code == 200, path
            check_no_leak(served, ask, res.text, path)
    assert not served.guarded, served.guarded[0].getMessage()  # the index itself enforced it


def sees(served: Served, client: str) -> set[str]:
    ask = ask_for(client, None)
    found = set()
    for key in FILES:
        res = served.client.post("/search", headers=ask.headers, json={
            "query": word_of(key), "mode": "keyword", "k": 10})
        found |= {h["doc_key"] for h in res.json()["hits"]} & {key}
    return found


def test_the_issues_check(served: Served) -> None:
    """Files of uid 1001/1002 with modes 0644, 0640 (gid 2001) and 0600; alice (uid:1001),
    bob (uid:1002, gid:2001), guest (no principals)."""
    perms = dict.fromkeys(FILES, (1001, 2002, 0o600))  # the other files: alice's alone
    perms.update({"f0.md": (1001, 2001, 0o644), "team/f1.md": (1001, 2001, 0o640),
                  "f2.md": (1002, 2002, 0o600)})
    apply(served, perms)
    alice, bob, guest = "c1", "c6", "c0"  # c<bits of PRINCIPALS>
    mine = {k for k, v in perms.items() if v == (1001, 2002, 0o600)}
    assert sees(served, alice) == {"f0.md", "team/f1.md"} | mine
    assert sees(served, bob) == {"f0.md", "team/f1.md", "f2.md"}
    assert sees(served, guest) == {"f0.md"}
    perms["team/f1.md"] = (1001, 2001, 0o600)
    apply(served, perms)  # asserts 0 chunks embedded
    assert sees(served, bob) == {"f0.md", "f2.md"}
    res = served.client.get("/documents/docs/team/f1.md", headers=ask_for(bob, None).headers)
    assert (res.status_code, res.json()) == (404, {
        "detail": "no document 'team/f1.md' in source 'docs'"})
