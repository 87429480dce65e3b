"""Request dependencies: the shared serving state and the optional API key."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from freshrag.api.batch import QueryBatcher
from freshrag.api.freshness import FreshnessTracker
from freshrag.api.settings import ApiSettings
from freshrag.config import Settings


@dataclass
class AppState:
    """What every request shares: one engine (one loaded model), freshness checks, limits."""

    settings: Settings
    api: ApiSettings
    engine: Any = None  # freshrag.engine.Engine, built in the lifespan unless given
    owns_engine: bool = True
    freshness: FreshnessTracker | None = None
    limiter: anyio.CapacityLimiter | None = None
    batcher: QueryBatcher | None = None  # the queries' embeddings, batched
    model_loaded: bool = False
    probe_vector: list[float] = field(default_factory=list)

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

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <FRESHRAG_API_KEY>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <key>")


def require_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_header)],
) -> None:
    """When an API key is configured, the request must carry it, and every key it carries
    (Bearer, X-API-Key) must be it: a wrong one is refused even beside a right one."""
    expected: str = request.app.state.freshrag.settings.api_key
    if not expected:
        return
    want = expected.encode()
    given = [g for g in (bearer.credentials if bearer else None, header) if g is not None]
    # Compare every candidate (constant time each) so timing does not tell which one failed.
    ok = [hmac.compare_digest(g.encode(), want) for g in given]
    if not ok or not all(ok):
        raise HTTPException(
            401, "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key'",
            headers={"WWW-Authenticate": "Bearer"})
