"""`FreshragRetriever` for LangChain: a `BaseRetriever` over a running `freshrag serve`."""

from __future__ import annotations

from typing import Any

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        CallbackManagerForRetrieverRun,
    )
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:  # the extra is not installed
    raise ImportError(f"freshrag.integrations.langchain needs {exc.name}: "
                      "pip install 'freshrag[langchain]'") from exc

from pydantic import Field, PrivateAttr, SecretStr

from freshrag.client import AsyncClient, Client
from freshrag.client.models import SearchResult
from freshrag.integrations.common import hit_metadata, options


class FreshragRetriever(BaseRetriever):
    """Documents from freshrag's hybrid search, each citing source and doc_key, with
    `source_modified_at`, `indexed_at` and the response's `watermark` in its metadata.
    `max_lag_ms` / `min_watermark` demand freshness: the server waits (bounded) for the index
    to catch up, else `freshrag.client.StaleIndex` (a 503 with each source's lag) is raised.
    Any field can be given per call: `retriever.invoke("q", k=1, max_lag_ms=0)`."""

    url: str | None = None  # None: FRESHRAG_URL, else http://127.0.0.1:8000
    api_key: SecretStr | None = None  # None: FRESHRAG_API_KEY
    k: int = 5
    mode: str = "hybrid"
    alpha: float | None = None
    source: str | None = None
    filters: dict[str, Any] | None = None
    max_lag_ms: int | None = None
    min_watermark: float | None = None
    timeout: float = 30.0
    # An httpx transport for tests: `freshrag.client.testing.MockServer().transport()`.
    transport: Any = Field(default=None, exclude=True, repr=False)

    _client: Client | None = PrivateAttr(default=None)

    def _key(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key is not None else None

    def _search_options(self, overrides: dict[str, Any]) -> dict[str, Any]:
        return options({"k": self.k, "mode": self.mode, "alpha": self.alpha,
                        "source": self.source, "filters": self.filters,
                        "max_lag_ms": self.max_lag_ms, "min_watermark": self.min_watermark},
                       overrides)

    @staticmethod
    def _documents(result: SearchResult) -> list[Document]:
        return [Document(page_content=h.text, metadata=hit_metadata(h, result))
                for h in result.hits]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        if self._client is None:
            self._client = Client(self.url, self._key(), timeout=self.timeout,
                                  transport=self.transport)
        return self._documents(self._client.search(query, **self._search_options(kwargs)))

    async def _aget_relevant_documents(
            self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
            **kwargs: Any) -> list[Document]:
        # One client per call: an httpx.AsyncClient's connections belong to one event loop.
        async with AsyncClient(self.url, self._key(), timeout=self.timeout,
                               transport=self.transport) as client:
            result = await client.search(query, **self._search_options(kwargs))
        return self._documents(result)
