"""`AsyncClient`: the asyncio HTTP client of a running `freshrag serve`."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from freshrag.api.schemas import SearchFilters
from freshrag.client import wire
from freshrag.client.errors import unreachable
from freshrag.client.models import Document, SearchResult, Status


class AsyncClient:
    """`Client`'s methods as coroutines (`async with AsyncClient(url, api_key) as c: ...`)."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None):
        self.url = wire.base_url(url)
        self._http = httpx.AsyncClient(base_url=self.url, headers=wire.headers(api_key),
                                       timeout=timeout, transport=transport)

    async def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    async def search(self, query: str, k: int = 5, *, mode: str = "hybrid",
                     alpha: float | None = None, source: str | None = None,
                     filters: SearchFilters | Mapping[str, Any] | None = None,
                     max_lag_ms: int | None = None, min_watermark: float | None = None
                     ) -> SearchResult:
        """POST /search (see `Client.search`)."""
        body = wire.search_body(query, k, mode, alpha, source, filters, max_lag_ms,
                                min_watermark)
        return wire.parse(await self._send("POST", "/search", json=body), SearchResult)

    async def document(self, source: str, key: str) -> Document:
        """GET /documents/{source}/{key}."""
        return wire.parse(await self._send("GET", wire.document_path(source, key)), Document)

    async def status(self) -> Status:
        """GET /status."""
        return wire.parse(await self._send("GET", "/status"), Status)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
