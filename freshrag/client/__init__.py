"""The Python client of `freshrag serve`: `Client` (sync) and `AsyncClient`, typed results,
errors that say what the server said. Imports only httpx and pydantic."""

from freshrag.client.aio import AsyncClient
from freshrag.client.errors import (
    FreshragError,
    InvalidRequest,
    NotFound,
    ServerError,
    StaleIndex,
    TooLarge,
    Unauthorized,
    Unavailable,
    Unreachable,
)
from freshrag.client.models import Document, Filters, Freshness, Hit, SearchResult, Status
from freshrag.client.sync import Client

__all__ = [
    "AsyncClient", "Client", "Document", "Filters", "Freshness", "FreshragError", "Hit",
    "InvalidRequest", "NotFound", "SearchResult", "ServerError", "StaleIndex", "Status",
    "TooLarge", "Unauthorized", "Unavailable", "Unreachable",
]
