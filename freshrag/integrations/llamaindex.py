"""`FreshragRetriever` for LlamaIndex: a `BaseRetriever` over a running `freshrag serve`."""

from __future__ import annotations

import hashlib
from typing import Any

try:
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as exc:  # the extra is not installed
    raise ImportError(f"freshrag.integrations.llamaindex needs {exc.name}: "
                      "pip install 'freshrag[llamaindex]'") from exc

from freshrag.client import AsyncClient, Client
from freshrag.client.models import SearchResult
from freshrag.integrations.common import hit_metadata, options

# Kept in each node's metadata but out of the text an LLM or an embedder is given.
_NOT_FOR_MODELS = ["score", "source_modified_at", "indexed_at", "watermark", "lag_ms",
                   "location", "page", "fields"]


class FreshragRetriever(BaseRetriever):
    """`NodeWithScore`s from freshrag's hybrid search with the LangChain retriever's metadata
    (source, doc_key, location, title, score, source_modified_at, indexed_at, watermark).
    `max_lag_ms` / `min_watermark` demand freshness (else `freshrag.client.StaleIndex`)."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *, k: int = 5,
                 mode: str = "hybrid", alpha: float | None = None, source: str | None = None,
                 filters: dict[str, Any] | None = None, max_lag_ms: int | None = None,
                 min_watermark: float | None = None, timeout: float = 30.0,
                 transport: Any = None, callback_manager: CallbackManager | None = None,
                 verbose: bool = False):
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        self.url, self.api_key, self.timeout = url, api_key, timeout
        self.transport = transport  # for tests: freshrag.client.testing.MockServer().transport()
        self.search_options = options({}, {
            "k": k, "mode": mode, "alpha": alpha, "source": source, "filters": filters,
            "max_lag_ms": max_lag_ms, "min_watermark": min_watermark})
        self._client: Client | None = None

    @staticmethod
    def _nodes(result: SearchResult) -> list[NodeWithScore]:
        out = []
        for hit in result.hits:
            digest = hashlib.sha256(hit.text.encode()).hexdigest()[:16]
            node = TextNode(id_=f"{hit.source}:{hit.doc_key}#{digest}", text=hit.text,
                            metadata=hit_metadata(hit, result),
                            excluded_llm_metadata_keys=list(_NOT_FOR_MODELS),
                            excluded_embed_metadata_keys=list(_NOT_FOR_MODELS))
            out.append(NodeWithScore(node=node, score=hit.score))
        return out

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if self._client is None:
            self._client = Client(self.url, self.api_key, timeout=self.timeout,
                                  transport=self.transport)
        return self._nodes(self._client.search(query_bundle.query_str, **self.search_options))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        async with AsyncClient(self.url, self.api_key, timeout=self.timeout,
                               transport=self.transport) as client:
            result = await client.search(query_bundle.query_str, **self.search_options)
        return self._nodes(result)
