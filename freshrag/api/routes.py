"""The endpoints: search, status, ready, metrics, documents (behind the key); health, the page."""

from __future__ import annotations

import time
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from freshrag import metrics
from freshrag.api.deps import AppState, State, require_key
from freshrag.api.freshness import Check, Stale
from freshrag.api.page import PAGE
from freshrag.api.schemas import (
    DocumentOut,
    ErrorOut,
    Health,
    HitOut,
    Ready,
    SearchParams,
    SearchRequest,
    SearchResponse,
    SourceError,
    SourceStatus,
    StaleResponse,
    StatusResponse,
    ValidationOut,
)
from freshrag.model import Filters, Hit, Mode
from freshrag.status import source_status

_COMMON: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "API key missing or wrong (when one is set)"},
    422: {"model": ValidationOut, "description": "Invalid input; `errors` names each field"},
    503: {"model": ErrorOut, "description": "Index or model unavailable"},
}
_SEARCH: dict[int | str, dict[str, Any]] = {
    **_COMMON,
    404: {"model": ErrorOut, "description": "filters.source names no known source"},
    413: {"model": ErrorOut, "description": "Request body too large"},
    503: {"model": StaleResponse, "description": "The index did not catch up with the freshness "
                                                 "asked for within the wait bound (or is down)"},
}

protected = APIRouter(dependencies=[Depends(require_key)])
public = APIRouter()


def refresh_index(engine: Any) -> None:
    """Let the index handle see writes by other processes (a watcher, a CLI sync)."""
    refresh = getattr(engine.index, "refresh", None)
    if callable(refresh):
        refresh()


def _queried(state: AppState, source: str | None) -> list[str]:
    names = state.source_names()
    if source is None:
        return names
    if source not in names:
        raise HTTPException(404, f"unknown source {source!r} (known: {', '.join(names) or 'none'})")
    return [source]


def _run_search(engine: Any, query: str, k: int, mode: Mode, alpha: float | None,
                filters: Filters | None, vector: list[float] | None) -> list[Hit]:
    refresh_index(engine)  # after the freshness check: the hits are at least that fresh
    hits: list[Hit] = engine.search(query, k, mode, alpha, filters, vector=vector)
    return hits


def _stale(exc: Stale) -> JSONResponse:
    behind = [f"{c.source} lags {'unknown' if c.lag_ms is None else f'{c.lag_ms:.0f} ms'}"
              + (f" ({c.pending} pending)" if c.pending else "")
              for c in exc.checks.values() if c.configured]
    body = StaleResponse(
        detail=f"index not fresh enough after waiting {exc.waited_ms:.0f} ms: "
               + "; ".join(behind),
        freshness={n: c.model() for n, c in exc.checks.items()}, waited_ms=exc.waited_ms)
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})


async def _search(state: AppState, query: str, k: int, mode: Mode, alpha: float | None,
                  filters: Filters | None, max_lag_ms: int | None,
                  min_watermark: float | None, where: str,
                  response: Response) -> SearchResponse | JSONResponse:
    started = time.perf_counter()
    assert state.freshness is not None
    if min_watermark is not None and min_watermark > time.time() + state.freshness.max_wait_s:
        # No check can reach a watermark past its own time: this could only end in a 503.
        raise RequestValidationError([{
            "loc": (where, "min_watermark"), "type": "value_error",
            "msg": "is later than now plus the server's wait bound; it cannot be reached"}])
    names = await run_in_threadpool(_queried, state, filters.source if filters else None)
    try:
        checks: dict[str, Check] = await state.freshness.ensure(names, max_lag_ms, min_watermark)
    except Stale as exc:
        return _stale(exc)
    embedded = time.perf_counter()
    vector = None
    if mode is not Mode.keyword:
        assert state.batcher is not None
        vector = await state.batcher.embed(query)
    searched = time.perf_counter()
    hits = await anyio.to_thread.run_sync(_run_search, state.engine, query, k, mode, alpha,
                                          filters, vector, limiter=state.limiter)
    done = time.perf_counter()
    # Where the time went (the bench reads it): the query's embedding, then the index.
    response.headers["Server-Timing"] = (f"embed;dur={(searched - embedded) * 1000:.2f}, "
                                         f"index;dur={(done - searched) * 1000:.2f}")
    return SearchResponse(
        hits=[HitOut(**h.to_json()) for h in hits],
        freshness={n: c.model() for n, c in checks.items()},
        took_ms=round((time.perf_counter() - started) * 1000, 1))


@protected.post("/search", response_model=SearchResponse, responses=_SEARCH, tags=["search"])
async def search(body: SearchRequest, state: State,
                 response: Response) -> SearchResponse | JSONResponse:
    """Search the index. With `max_lag_ms` or `min_watermark` the answer waits (bounded) for
    the index to catch up, or is a 503 saying how far behind each source is."""
    f = body.filters
    filters = (Filters(f.source, f.doc_key_prefix, dict(f.metadata)) if f else None)
    return await _search(state, body.query, body.k, body.mode, body.alpha, filters,
                         body.max_lag_ms, body.min_watermark, "body", response)


@protected.get("/search", response_model=SearchResponse, responses=_SEARCH, tags=["search"])
async def search_get(params: Annotated[SearchParams, Query()],
                     state: State, response: Response) -> SearchResponse | JSONResponse:
    """`POST /search` for curl and browsers: `GET /search?q=travel+policy&k=3`."""
    filters = (Filters(params.source, params.doc_key_prefix)
               if params.source or params.doc_key_prefix else None)
    return await _search(state, params.q, params.k, params.mode, params.alpha, filters,
                         params.max_lag_ms, params.min_watermark, "query", response)


@protected.get("/status", response_model=StatusResponse, responses=_COMMON, tags=["operations"])
async def status(state: State) -> StatusResponse:
    """Per source: documents, chunks, last sync, freshness (lag, pending) and last errors."""
    assert state.freshness is not None

    def rows() -> list[dict[str, Any]]:
        refresh_index(state.engine)
        return source_status(state.engine)

    table = await run_in_threadpool(rows)
    checks = await state.freshness.current([r["source"] for r in table])
    configured = {s.name for s in state.settings.sources}
    return StatusResponse(sources=[SourceStatus(
        source=r["source"], configured=r["source"] in configured, documents=r["documents"],
        chunks=r["chunks"], last_sync_start=r["last_sync_start"],
        last_sync_end=r["last_sync_end"], last_report=r["last_report"],
        freshness=checks[r["source"]].model(),
        errors=[SourceError(**e) for e in r["errors"]]) for r in table])


@protected.get("/ready", response_model=Ready, tags=["operations"],
               responses={**_COMMON, 503: {"model": Ready, "description": "Not ready"}})
async def ready(request: Request) -> Ready | JSONResponse:
    """Ready to serve: model loaded, ledger and index reachable."""
    state: AppState = request.app.state.freshrag
    checks = {"model": "ok" if state.model_loaded else "loading"}
    if state.engine is not None:
        engine = state.engine

        def probe_index() -> None:
            refresh_index(engine)
            engine.index.search("ready", state.probe_vector, 1, Mode.vector)

        for name, probe in (("ledger", engine.ledger.sources), ("index", probe_index)):
            try:
                await run_in_threadpool(probe)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"error: {type(exc).__name__}"
    else:
        checks.update(ledger="starting", index="starting")
    ok = all(v == "ok" for v in checks.values())
    body = Ready(ready=ok, checks=checks)
    return body if ok else JSONResponse(body.model_dump(), status_code=503)


@protected.get("/documents/{source}/{key:path}", response_model=DocumentOut, tags=["debug"],
               responses={**_COMMON, 404: {"model": ErrorOut,
                                           "description": "Unknown source or document"}})
async def document(source: Annotated[str, Path(min_length=1, max_length=200)],
                   key: Annotated[str, Path(min_length=1, max_length=1000)],
                   state: State) -> DocumentOut:
    """The chunks of one document as indexed, in order. Looked up in the index by key:
    no file is opened."""

    def lookup() -> list[Hit]:
        if source not in state.source_names():
            raise HTTPException(404, f"unknown source {source!r}")
        if "\x00" in key:
            raise HTTPException(404, "no such document")
        refresh_index(state.engine)
        chunks: list[Hit] = state.engine.document(source, key)
        if not chunks and state.engine.ledger.get(source, key) is None:
            raise HTTPException(404, f"no document {key!r} in source {source!r}")
        return chunks

    chunks = await run_in_threadpool(lookup)
    return DocumentOut(source=source, doc_key=key, chunks=[HitOut(**h.to_json()) for h in chunks])


@protected.get("/metrics", response_class=Response, tags=["operations"], responses={
    **_COMMON, 200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics_text() -> Response:
    """Prometheus metrics of this process (with `freshrag up`, the watcher's too)."""
    return Response(await run_in_threadpool(metrics.render),
                    media_type=metrics.CONTENT_TYPE_LATEST)


@public.get("/health", response_model=Health, tags=["operations"])
async def health() -> Health:
    """Liveness: the process answers (no key needed)."""
    return Health()


@public.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE)
