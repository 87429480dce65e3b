"""`Client`: the blocking HTTP client of a running `freshrag serve`."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from freshrag.api.schemas import SearchFilters
from freshrag.client import wire
from freshrag.client.errors import unreachable
from freshrag.client.models import Document, SearchResult, Status


class Client:
    """`Client(url, api_key)`: search, document, status. `url` defaults to FRESHRAG_URL or
    http://127.0.0.1:8000, `api_key` to FRESHRAG_API_KEY. `transport` is for tests
    (`freshrag.client.testing.MockServer().transport()`)."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.url = wire.base_url(url)
        self._http = httpx.Client(base_url=self.url, headers=wire.headers(api_key),
                                  timeout=timeout, transport=transport)

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc

    def search(self, query: str, k: int = 5, *, mode: str = "hybrid",
               alpha: float | None = None, source: str | None = None,
               filters: SearchFilters | Mapping[str, Any] | None = None,
               max_lag_ms: int | None = None, min_watermark: float | None = None
               ) -> SearchResult:
        """POST /search. With `max_lag_ms` / `min_watermark` the server waits (bounded) for the
        index to catch up, or this raises `StaleIndex` with each source's lag."""
        body = wire.search_body(query, k, mode, alpha, source, filters, max_lag_ms,
                                min_watermark)
        return wire.parse(self._send("POST", "/search", json=body), SearchResult)

    def document(self, source: str, key: str) -> Document:
        """GET /documents/{source}/{key}: the document's chunks as indexed, in order."""
        return wire.parse(self._send("GET", wire.document_path(source, key)), Document)

    def status(self) -> Status:
        """GET /status: per source documents, chunks, last sync, freshness and errors."""
        return wire.parse(self._send("GET", "/status"), Status)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
