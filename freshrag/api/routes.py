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
from freshrag.api.auth import Caller
from freshrag.api.deps import AdminDep, AppState, CallerDep, State, authenticate
from freshrag.api.freshness import Check, Stale
from freshrag.api.page import PAGE
from freshrag.api.schemas import (
    CanaryStatus,
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
from freshrag.config import VectorsMismatch
from freshrag.model import Filters, Hit, Mode
from freshrag.status import source_status

_COMMON: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "A gateway's principal header is malformed"},
    401: {"model": ErrorOut, "description": "API key missing or wrong (when one is set)"},
    422: {"model": ValidationOut, "description": "Invalid input; `errors` names each field"},
    503: {"model": ErrorOut, "description": "Index or model unavailable"},
}
_SEARCH: dict[int | str, dict[str, Any]] = {
    **_COMMON,
    404: {"model": ErrorOut, "description": "filters.source names no known source"},
    409: {"model": ErrorOut, "description": "The index holds another model's vectors than "
                                            "this server embeds queries with (vector, hybrid)"},
    413: {"model": ErrorOut, "description": "Request body too large"},
    503: {"model": StaleResponse, "description": "The index did not catch up with the freshness "
                                                 "asked for within the wait bound (or is down)"},
}

protected = APIRouter(dependencies=[Depends(authenticate)])
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


def _document(engine: Any, source: str, key: str, caller: Caller) -> list[Hit]:
    chunks: list[Hit] = engine.document(source, key, caller.filters(None))
    return chunks


def _stale(exc: Stale, caller: Caller) -> JSONResponse:
    behind = [f"{c.source} lags {'unknown' if c.lag_ms is None else f'{c.lag_ms:.0f} ms'}"
              + (f" ({c.pending} pending)" if c.pending and caller.admin else "")
              for c in exc.checks.values() if c.configured]
    body = StaleResponse(
        detail=f"index not fresh enough after waiting {exc.waited_ms:.0f} ms: "
               + "; ".join(behind),
        freshness={n: caller.freshness(c.model()) for n, c in exc.checks.items()},
        waited_ms=exc.waited_ms)
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})


async def _search(state: AppState, caller: Caller, query: str, k: int, mode: Mode,
                  alpha: float | None, filters: Filters | None, max_lag_ms: int | None,
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
        return _stale(exc, caller)
    embedded = time.perf_counter()
    vector = None
    if mode is not Mode.keyword:
        assert state.batcher is not None
        vector = await state.batcher.embed(query)
    searched = time.perf_counter()
    try:
        hits = await anyio.to_thread.run_sync(_run_search, state.engine, query, k, mode, alpha,
                                              caller.filters(filters), vector,
                                              limiter=state.limiter)
    except VectorsMismatch as exc:
        return JSONResponse({"detail": str(exc)}, status_code=409)
    done = time.perf_counter()
    # Where the time went (the bench reads it): the query's embedding, then the index.
    response.headers["Server-Timing"] = (f"embed;dur={(searched - embedded) * 1000:.2f}, "
                                         f"index;dur={(done - searched) * 1000:.2f}")
    return SearchResponse(
        hits=[HitOut(**h.to_json()) for h in caller.guard(hits, "search")],
        freshness={n: caller.freshness(c.model()) for n, c in checks.items()},
        took_ms=round((time.perf_counter() - started) * 1000, 1))


@protected.post("/search", response_model=SearchResponse, responses=_SEARCH, tags=["search"])
async def search(body: SearchRequest, state: State,
                 caller: CallerDep, response: Response) -> SearchResponse | JSONResponse:
    """Search the index. With `max_lag_ms` or `min_watermark` the answer waits (bounded) for
    the index to catch up, or is a 503 saying how far behind each source is."""
    f = body.filters
    filters = (Filters(f.source, f.doc_key_prefix, dict(f.metadata)) if f else None)
    return await _search(state, caller, body.query, body.k, body.mode, body.alpha, filters,
                         body.max_lag_ms, body.min_watermark, "body", response)


@protected.get("/search", response_model=SearchResponse, responses=_SEARCH, tags=["search"])
async def search_get(params: Annotated[SearchParams, Query()],
                     state: State, caller: CallerDep,
                     response: Response) -> SearchResponse | JSONResponse:
    """`POST /search` for curl and browsers: `GET /search?q=travel+policy&k=3`."""
    filters = (Filters(params.source, params.doc_key_prefix)
               if params.source or params.doc_key_prefix else None)
    return await _search(state, caller, params.q, params.k, params.mode, params.alpha, filters,
                         params.max_lag_ms, params.min_watermark, "query", response)


@protected.get("/status", response_model=StatusResponse, responses=_COMMON, tags=["operations"])
async def status(state: State, caller: CallerDep) -> StatusResponse:
    """Per source: documents, chunks, last sync, freshness (lag, pending) and last errors.
    A client that is not an admin gets freshness only: no counts, reports or errors."""
    assert state.freshness is not None

    def rows() -> list[dict[str, Any]]:
        refresh_index(state.engine)
        return source_status(state.engine, since=state.started)

    table = await run_in_threadpool(rows)
    checks = await state.freshness.current([r["source"] for r in table])
    configured = {s.name for s in state.settings.sources}
    full = caller.admin
    return StatusResponse(sources=[SourceStatus(
        source=r["source"], configured=r["source"] in configured,
        documents=r["documents"] if full else None, chunks=r["chunks"] if full else None,
        last_sync_start=r["last_sync_start"], last_sync_end=r["last_sync_end"],
        last_report=r["last_report"] if full else None,
        freshness=caller.freshness(checks[r["source"]].model()),
        errors=[SourceError(**e) for e in r["errors"]] if full else [],
        canary=CanaryStatus(**r["canary"]) if "canary" in r else None) for r in table])


@protected.get("/ready", response_model=Ready, tags=["operations"],
               responses={**_COMMON, 503: {"model": Ready, "description": "Not ready (or, with "
                                                            "strict=true, degraded)"}})
async def ready(request: Request, strict: Annotated[bool, Query(
        description="Answer 503 when degraded (a canary is late), not 200")] = False
                ) -> Ready | JSONResponse:
    """Ready to serve: model loaded, ledger and index reachable. A late canary (the watcher
    stopped, or changes stopped reaching search) makes it `degraded`, named in `checks` as
    `canary:SOURCE`; still 200 (search answers) unless `strict=true`."""
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
    late = canary_checks(state.settings, state.started)
    checks.update(late)
    degraded = any(v != "ok" for v in late.values())
    fine = ok and not (strict and degraded)
    body = Ready(ready=fine, checks=checks, degraded=degraded)
    return body if fine else JSONResponse(body.model_dump(), status_code=503)


def canary_checks(settings: Any, since: float) -> dict[str, str]:
    """`canary:SOURCE` -> "ok", or why it is late (read from the watcher's shared state)."""
    from freshrag.canary import report

    return {f"canary:{name}": v["detail"] if v["late"] else "ok"
            for name, v in report(settings, since).items()}


@protected.get("/documents/{source}/{key:path}", response_model=DocumentOut, tags=["debug"],
               responses={**_COMMON, 404: {"model": ErrorOut,
                                           "description": "Unknown source or document"}})
async def document(source: Annotated[str, Path(min_length=1, max_length=200)],
                   key: Annotated[str, Path(min_length=1, max_length=1000)],
                   state: State, caller: CallerDep) -> DocumentOut:
    """The chunks of one document as indexed, in order. Looked up in the index by key:
    no file is opened. Only the chunks the caller may read; a document with none is a 404,
    the same answer as a document that does not exist."""
    missing = f"no document {key!r} in source {source!r}"

    def lookup() -> list[Hit]:
        if source not in state.source_names():
            raise HTTPException(404, f"unknown source {source!r}")
        if "\x00" in key:
            raise HTTPException(404, missing)
        refresh_index(state.engine)
        chunks = caller.guard(_document(state.engine, source, key, caller), "documents")
        if not chunks and (not caller.admin or state.engine.ledger.get(source, key) is None):
            raise HTTPException(404, missing)
        return chunks

    chunks = await run_in_threadpool(lookup)
    return DocumentOut(source=source, doc_key=key, chunks=[HitOut(**h.to_json()) for h in chunks])


@protected.get("/metrics", response_class=Response, tags=["operations"], responses={
    **_COMMON, 200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics_text(_: AdminDep) -> Response:
    """Prometheus metrics of this process (with `freshrag up`, the watcher's too); admin
    clients only (they count documents)."""
    return Response(await run_in_threadpool(metrics.render),
                    media_type=metrics.CONTENT_TYPE_LATEST)


@public.get("/health", response_model=Health, tags=["operations"])
async def health() -> Health:
    """Liveness: the process answers (no key needed)."""
    return Health()


@public.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE)
