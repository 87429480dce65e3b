"""`MockServer`: an in-memory stand-in for `freshrag serve`, for the tests of apps that use the
client (an `httpx.MockTransport` that answers with the API's own models and error bodies)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
from pydantic import ValidationError

from freshrag.api.schemas import (
    DocumentOut,
    HitOut,
    SearchRequest,
    SearchResponse,
    SourceFreshness,
    SourceStatus,
    StaleResponse,
    StatusResponse,
)

MAX_BODY_BYTES = 65_536
_WORD = re.compile(r"\w+")


@dataclass
class MockServer:
    """Documents added with `add` are searchable at once; `behind(source, lag_ms)` makes that
    source lag, so a freshness demand gets the server's 503. Scores are the share of the
    query's words a chunk contains (a stand-in for ranking, not freshrag's). `requests` keeps
    every request received.

        server = MockServer(api_key="k")
        server.add("docs", "travel.md", "Hotel costs up to 150 EUR a night.")
        client = Client("http://freshrag.test", api_key="k", transport=server.transport())
    """

    api_key: str = ""
    hits: list[HitOut] = field(default_factory=list)
    lag: dict[str, float] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def add(self, source: str, key: str, text: str, *, title: str = "",
            metadata: dict[str, Any] | None = None, page: int | None = None,
            modified_at: float | None = None) -> HitOut:
        now = time.time()
        hit = HitOut(text=text, score=0.0, source=source, doc_key=key,
                     location=f"/mock/{source}/{key}", title=title or key, page=page,
                     metadata=metadata or {}, source_modified_at=modified_at or now,
                     indexed_at=now)
        self.hits.append(hit)
        self.lag.setdefault(source, 0.0)
        return hit

    def behind(self, source: str, lag_ms: float) -> None:
        self.lag[source] = lag_ms

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if not self._authorized(request):
            return _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>' "
                          "or 'X-API-Key'")
        if path == "/search" and request.method == "POST":
            return self._search(request)
        if path.startswith("/documents/") and request.method == "GET":
            source, _, key = path.removeprefix("/documents/").partition("/")
            return self._document(unquote(source), unquote(key))
        if path == "/status" and request.method == "GET":
            return _json(200, StatusResponse(sources=[self._status(s) for s in self.lag]))
        return _error(404, "Not Found")

    def _authorized(self, request: httpx.Request) -> bool:
        if not self.api_key:
            return True
        auth = request.headers.get("authorization", "")
        given = [g for g in (auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None,
                             request.headers.get("x-api-key")) if g is not None]
        return bool(given) and all(g == self.api_key for g in given)

    def _freshness(self, source: str) -> SourceFreshness:
        now = time.time()
        lag = self.lag.get(source, 0.0)
        return SourceFreshness(watermark=now - lag / 1000, lag_ms=lag, pending=1 if lag else 0,
                               method="scan", checked_at=now, last_sync_end=now)

    def _search(self, request: httpx.Request) -> httpx.Response:
        raw = request.read()
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, f"request body over {MAX_BODY_BYTES} bytes")
        try:
            body = SearchRequest.model_validate_json(raw)
        except ValidationError as exc:
            errors = [{"field": ".".join(str(p) for p in e["loc"]) or "body",
                       "location": "body", "message": e["msg"]} for e in exc.errors()]
            detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
            return httpx.Response(422, json={"detail": detail, "errors": errors})
        f = body.filters
        names = list(self.lag)
        if f is not None and f.source is not None:
            if f.source not in names:
                return _error(404, f"unknown source {f.source!r} (known: "
                              f"{', '.join(names) or 'none'})")
            names = [f.source]
        fresh = {n: self._freshness(n) for n in names}
        behind = {n: x for n, x in fresh.items() if x.lag_ms and (
            (body.max_lag_ms is not None and x.lag_ms > body.max_lag_ms)
            or (body.min_watermark is not None and (x.watermark or 0) < body.min_watermark))}
        if behind:
            detail = "index not fresh enough after waiting 0 ms: " + "; ".join(
                f"{n} lags {x.lag_ms:.0f} ms (1 pending)" for n, x in behind.items())
            return _json(503, StaleResponse(detail=detail, freshness=fresh, waited_ms=0.0),
                         {"Retry-After": "1"})
        words = set(_WORD.findall(body.query.lower()))
        scored = []
        for hit in self.hits:
            if hit.source not in names or (f and f.doc_key_prefix
                                           and not hit.doc_key.startswith(f.doc_key_prefix)):
                continue
            if f and any(hit.metadata.get(k) != v for k, v in f.metadata.items()):
                continue
            have = set(_WORD.findall(f"{hit.title} {hit.text}".lower()))
            score = len(words & have) / max(1, len(words))
            scored.append(hit.model_copy(update={"score": round(score, 4)}))
        scored.sort(key=lambda h: -h.score)
        return _json(200, SearchResponse(hits=scored[:body.k], freshness=fresh, took_ms=0.1))

    def _document(self, source: str, key: str) -> httpx.Response:
        if source not in self.lag:
            return _error(404, f"unknown source {source!r}")
        chunks = [h for h in self.hits if h.source == source and h.doc_key == key]
        if not chunks:
            return _error(404, f"no document {key!r} in source {source!r}")
        return _json(200, DocumentOut(source=source, doc_key=key, chunks=chunks))

    def _status(self, source: str) -> SourceStatus:
        hits = [h for h in self.hits if h.source == source]
        return SourceStatus(source=source, configured=True,
                            documents=len({h.doc_key for h in hits}), chunks=len(hits),
                            last_sync_start=None, last_sync_end=None, last_report=None,
                            freshness=self._freshness(source), errors=[])


def _json(status: int, model: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(model.model_dump()).encode(),
                          headers={"content-type": "application/json", **(headers or {})})


def _error(status: int, detail: str) -> httpx.Response:
    return httpx.Response(status, json={"detail": detail},
                          headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)
