"""The retrievers on MockServer: per-call options, freshness errors, async (no server needed;
tests/e2e/test_integrations.py runs them against `freshrag serve`)."""

from __future__ import annotations

import asyncio
import json

import pytest

from freshrag.client import StaleIndex
from freshrag.client.testing import MockServer
from freshrag.integrations.langchain import FreshragRetriever as LangChainRetriever
from freshrag.integrations.llamaindex import FreshragRetriever as LlamaIndexRetriever


@pytest.fixture
def server() -> MockServer:
    server = MockServer(api_key="k")
    server.add("docs", "travel.md", "Hotel costs up to 150 EUR a night.", title="Travel")
    server.add("docs", "security.md", "Report a phishing email at once.", title="Security")
    server.add("wiki", "hotels.md", "Hotels near the office.", metadata={"team": "ops"})
    return server


def test_langchain_fields_and_per_call_options_reach_the_request(server: MockServer) -> None:
    retriever = LangChainRetriever(url="http://t", api_key="k", k=2, source="docs",
                                   max_lag_ms=500, transport=server.transport())
    docs = retriever.invoke("hotel costs")
    assert [d.metadata["doc_key"] for d in docs] == ["travel.md", "security.md"]
    sent = json.loads(server.requests[-1].content)
    assert sent == {"query": "hotel costs", "k": 2, "mode": "hybrid",
                    "filters": {"source": "docs"}, "max_lag_ms": 500}
    docs = retriever.invoke("hotels", k=1, source=None, filters={"metadata": {"team": "ops"}})
    assert [(d.metadata["source"], d.metadata["fields"]) for d in docs] == [
        ("wiki", {"team": "ops"})]
    with pytest.raises(TypeError, match="unknown search option.*top_k"):
        retriever.invoke("hotel", top_k=1)
    assert "k" not in repr(retriever.api_key) and "transport" not in repr(retriever)


def test_a_lagging_source_is_a_stale_index_error_through_both_retrievers(
        server: MockServer) -> None:
    server.behind("docs", 7000)
    lc = LangChainRetriever(url="http://t", api_key="k", max_lag_ms=1000,
                            transport=server.transport())
    with pytest.raises(StaleIndex, match="docs lags 7000 ms") as err:
        lc.invoke("hotel")
    assert err.value.lag_ms == 7000
    li = LlamaIndexRetriever("http://t", "k", min_watermark=1e10, transport=server.transport())
    with pytest.raises(StaleIndex):
        li.retrieve("hotel")
    assert lc.invoke("hotel", max_lag_ms=None)  # no demand: answered, lag reported
    assert lc.invoke("hotel", max_lag_ms=None)[0].metadata["lag_ms"] == 7000


def test_async_paths_answer_like_the_sync_ones(server: MockServer) -> None:
    lc = LangChainRetriever(url="http://t", api_key="k", k=1, transport=server.transport())
    li = LlamaIndexRetriever("http://t", "k", k=1, transport=server.transport())
    docs = asyncio.run(lc.ainvoke("phishing"))
    nodes = asyncio.run(li.aretrieve("phishing"))
    assert docs[0].metadata["doc_key"] == nodes[0].node.metadata["doc_key"] == "security.md"
    assert nodes[0].node.node_id.startswith("docs:security.md#")
