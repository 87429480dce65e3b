"""Requests and answers on the wire, shared by the sync and the async client."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from freshrag.api.schemas import SearchFilters
from freshrag.client.errors import error_for

DEFAULT_URL = "http://127.0.0.1:8000"
M = TypeVar("M", bound=BaseModel)


def base_url(url: str | None) -> str:
    return (url or os.environ.get("FRESHRAG_URL") or DEFAULT_URL).rstrip("/")


def headers(api_key: str | None) -> dict[str, str]:
    """The key as a Bearer token (one header only: the server refuses a wrong one beside a
    right one). None reads FRESHRAG_API_KEY; "" sends none."""
    key = os.environ.get("FRESHRAG_API_KEY", "") if api_key is None else api_key
    return {"Authorization": f"Bearer {key}"} if key else {}


def search_body(query: str, k: int, mode: str, alpha: float | None, source: str | None,
                filters: SearchFilters | Mapping[str, Any] | None, max_lag_ms: int | None,
                min_watermark: float | None) -> dict[str, Any]:
    """The POST /search body; the server validates it (a 422 names the bad field)."""
    body: dict[str, Any] = {"query": query, "k": k, "mode": str(mode)}
    merged = (filters.model_dump(exclude_defaults=True) if isinstance(filters, SearchFilters)
              else dict(filters or {}))
    if source is not None:
        if merged.get("source") not in (None, source):
            raise ValueError(f"source={source!r} and filters.source={merged['source']!r} differ")
        merged["source"] = source
    if merged:
        body["filters"] = merged
    for name, value in (("alpha", alpha), ("max_lag_ms", max_lag_ms),
                        ("min_watermark", min_watermark)):
        if value is not None:
            body[name] = value
    return body


def document_path(source: str, key: str) -> str:
    return f"/documents/{quote(source, safe='')}/{quote(key, safe='/')}"


def parse(response: httpx.Response, model: type[M]) -> M:
    """The answer as `model`, or the exception for what the server said."""
    if response.is_success:
        return model.model_validate(response.json())
    raise error_for(response)
