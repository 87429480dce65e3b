"""The FastAPI app: one engine (the model loaded once, in the lifespan) shared by all requests."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from freshrag import metrics
from freshrag.api.auth import Authenticator
from freshrag.api.batch import QueryBatcher
from freshrag.api.deps import AppState
from freshrag.api.docs import install_docs
from freshrag.api.errors import BodyLimit, install_handlers
from freshrag.api.freshness import FreshnessTracker
from freshrag.api.routes import protected, public
from freshrag.api.settings import ApiSettings
from freshrag.config import Settings, load_settings
from freshrag.index import IndexMisconfigured, IndexUnavailable

log = logging.getLogger("freshrag.api")

DESCRIPTION = """
Search a freshrag index, and know how fresh the answer is.

Every search response carries, per queried source, a **watermark** (every change the source
made before it is searchable) and the current **lag** (0 when nothing is pending). Pass
`max_lag_ms` or `min_watermark` to get an answer at least that fresh: the server waits a
bounded time for the pipeline to catch up, or answers **503** with the lag.

When API clients (`[[api.clients]]`) or `FRESHRAG_API_KEY` are configured, every endpoint but
`/health` needs a client's key (`Authorization: Bearer <key>` or `X-API-Key: <key>`). Each
client reads only the documents its principals may read: searches, `/documents` (404 for a
document it may not read) and freshness are per caller; document counts in `/status` and
`/metrics` are for admin clients only.
"""


async def _start(state: AppState, engine: Any) -> None:
    if engine is None:
        from freshrag.engine import Engine

        engine = await run_in_threadpool(Engine, state.settings)
    state.engine = engine
    # Load the model now (off the event loop), not on the first query.
    state.probe_vector = (await run_in_threadpool(engine.embedder.embed, ["ready"]))[0]
    state.model_loaded = True
    try:
        await run_in_threadpool(lambda: engine.index)
    except (IndexUnavailable, IndexMisconfigured) as exc:
        # serve anyway: /ready says why, searches answer 503
        log.warning("index unavailable at start: %s", exc)
    api = state.api
    state.freshness = FreshnessTracker(engine, api.freshness_ttl_ms / 1000, api.poll_ms / 1000,
                                       api.max_wait_ms / 1000)
    state.limiter = anyio.CapacityLimiter(api.search_threads)
    state.batcher = QueryBatcher(engine.embedder.embed)
    metrics.watch_lag(lambda: state.engine, state.source_names)
    metrics.watch_canary(state.settings, state.started)


def create_app(settings: Settings | None = None, engine: Any = None,
               api: ApiSettings | None = None) -> FastAPI:
    """The app for `settings` (default: load_settings()). A given `engine` stays the caller's
    to close; otherwise one is built at startup and closed at shutdown."""
    settings = settings or load_settings()
    api = api or ApiSettings()
    state = AppState(settings, api, Authenticator(settings), owns_engine=engine is None)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await _start(state, engine)
        try:
            yield
        finally:
            metrics.unwatch_lag(state.engine)
            if state.owns_engine and state.engine is not None:
                state.engine.close()

    app = FastAPI(title="freshrag", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.freshrag = state
    install_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=api.max_body_bytes)
    app.add_middleware(metrics.HttpMetrics)  # outermost of ours: sees every status
    app.include_router(public)
    app.include_router(protected)
    install_docs(app)
    return app
