"""Request dependencies: the shared serving state and the caller (API key -> client)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from freshrag.api.auth import Authenticator, Caller
from freshrag.api.batch import QueryBatcher
from freshrag.api.freshness import FreshnessTracker
from freshrag.api.settings import ApiSettings
from freshrag.config import Settings


@dataclass
class AppState:
    """What every request shares: one engine (one loaded model), freshness checks, limits."""

    settings: Settings
    api: ApiSettings
    auth: Authenticator
    engine: Any = None  # freshrag.engine.Engine, built in the lifespan unless given
    owns_engine: bool = True
    freshness: FreshnessTracker | None = None
    limiter: anyio.CapacityLimiter | None = None
    batcher: QueryBatcher | None = None  # the queries' embeddings, batched
    model_loaded: bool = False
    probe_vector: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.time)  # a canary no watcher ran: late from here

    def source_names(self) -> list[str]:
        """Configured sources, then any the ledger still knows (their data is searchable)."""
        configured = [s.name for s in self.settings.sources]
        return list(dict.fromkeys(configured + self.engine.ledger.sources()))


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.freshrag
    if state.engine is None or state.freshness is None:
        raise HTTPException(503, "starting up")
    return state


State = Annotated[AppState, Depends(get_state)]

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <client key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <key>")


def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_header)],
) -> Caller:
    """The request's caller. When clients or an API key are configured, the request must carry
    a key, and every key it carries (Bearer, X-API-Key) must be the same client's: a wrong one
    is refused even beside a right one."""
    auth: Authenticator = request.app.state.freshrag.auth
    given = [g for g in (bearer.credentials if bearer else None, header) if g is not None]
    return auth.caller(given, request.headers)


CallerDep = Annotated[Caller, Depends(authenticate)]


def require_admin(caller: CallerDep) -> Caller:
    if not caller.admin:
        raise HTTPException(403, "admin only: this client is not an admin client")
    return caller


AdminDep = Annotated[Caller, Depends(require_admin)]
