"""The client, the LangChain and LlamaIndex retrievers and `freshrag mcp` against the installed
`freshrag serve` of a synced folder (one served project for the module)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests

from freshrag.client import Client, Unauthorized
from freshrag.integrations.langchain import FreshragRetriever as LangChainRetriever
from freshrag.integrations.llamaindex import FreshragRetriever as LlamaIndexRetriever
from tests.e2e.userpath import FRESHRAG, Project, make_project, user_env

KEY = "e2e-integrations-key"
CONFIG = f'api_key = "{KEY}"\n\n[[sources]]\nname = "docs"\ntype = "folder"\npath = "docs"\n'
DOCS = {
    "policies/travel.md": "# Travel policy\n\nBook flights through the travel desk two weeks "
                          "ahead. Hotel costs are reimbursed up to 150 EUR a night.\n",
    "policies/security.md": "# Security policy\n\nReport a lost laptop or a phishing email to "
                            "the security team within one hour.\n",
    "guides/onboarding.md": "# Onboarding\n\nNew engineers get a laptop on day one and pair "
                            "with a buddy for two weeks.\n",
    "notes.txt": "The cafeteria serves lunch from noon to two. Pasta on Tuesdays.\n",
}
QUERY = "how much of a hotel night is reimbursed"
WANT = "policies/travel.md"
METADATA = {"source", "doc_key", "location", "title", "score", "source_modified_at",
            "indexed_at", "watermark"}
SERVED: dict[str, str] = {}  # the served project's url, for the standard tests' properties


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, str]]:
    """A synced docs folder with an API key, and `freshrag serve` on it."""
    assert FRESHRAG.is_file(), f"{FRESHRAG} missing: install with `bash scripts/setup.sh`"
    for project in make_project(tmp_path_factory.mktemp("integrations")):
        project.write_config(CONFIG)
        for key, text in DOCS.items():
            path = project.docs / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        done = project.run("sync")
        assert done.returncode == 0, done.stderr
        _, base = project.serve()
        SERVED["url"] = base
        yield project, base


@pytest.fixture(autouse=True)
def _served(served: tuple[Project, str]) -> None:
    """Every test here needs the served project (the standard tests read SERVED)."""


@pytest.mark.slow
def test_langchain_retriever_returns_cited_dated_documents(served: tuple[Project, str]) -> None:
    _, base = served
    retriever = LangChainRetriever(url=base, api_key=KEY, k=3, max_lag_ms=0)
    before = time.time()
    docs = retriever.invoke(QUERY)
    assert [type(d) for d in docs] == [Document] * 3
    assert docs[0].metadata["doc_key"] == WANT and "150 EUR" in docs[0].page_content
    for doc in docs:
        assert set(doc.metadata) >= METADATA, doc.metadata
        meta = doc.metadata
        assert meta["source"] == "docs" and meta["location"].endswith(meta["doc_key"])
        # max_lag_ms=0: nothing was pending when the check ran, just before the search
        assert meta["watermark"] >= meta["indexed_at"] >= meta["source_modified_at"] > 0
        assert meta["watermark"] <= time.time() and meta["lag_ms"] == 0
    assert docs[0].metadata["watermark"] >= before - 1  # checked for this request
    adocs = asyncio.run(retriever.ainvoke(QUERY, k=1, source="docs"))
    assert [d.metadata["doc_key"] for d in adocs] == [WANT]


@pytest.mark.slow
def test_llamaindex_retriever_returns_nodes_with_the_same_metadata(
        served: tuple[Project, str]) -> None:
    from llama_index.core.schema import MetadataMode, NodeWithScore

    _, base = served
    retriever = LlamaIndexRetriever(base, KEY, k=2, max_lag_ms=0)
    nodes = retriever.retrieve(QUERY)
    assert len(nodes) == 2 and all(isinstance(n, NodeWithScore) for n in nodes)
    top = nodes[0]
    assert top.node.metadata["doc_key"] == WANT and set(top.node.metadata) >= METADATA
    assert top.score == top.node.metadata["score"] and "150 EUR" in top.node.get_content()
    # the citation reaches the LLM's text; freshness timestamps stay metadata only
    for_llm = top.node.get_content(metadata_mode=MetadataMode.LLM)
    assert WANT in for_llm and "indexed_at" not in for_llm
    anodes = asyncio.run(retriever.aretrieve("phishing email"))
    assert anodes[0].node.metadata["doc_key"] == "policies/security.md"


@pytest.mark.slow
def test_a_wrong_key_raises_an_error_naming_401(served: tuple[Project, str]) -> None:
    _, base = served
    with pytest.raises(Unauthorized, match=r"^401 Unauthorized .*wrong API key"):
        LangChainRetriever(url=base, api_key="wrong").invoke(QUERY)
    with pytest.raises(Unauthorized, match=r"^401 "):
        LlamaIndexRetriever(base, "wrong").retrieve(QUERY)
    with Client(base, api_key=KEY) as client:  # and the client itself, for /documents
        doc = client.document("docs", WANT)
    assert doc.chunks and doc.chunks[0].title == "Travel policy"


async def _mcp_session(project: Project, *args: str) -> tuple[Any, ...]:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=str(FRESHRAG), args=["mcp", *args],
                                   env=user_env(), cwd=project.elsewhere)
    with (project.root / "mcp.log").open("a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            found = await session.call_tool("search", {"query": QUERY, "k": 2,
                                                       "max_lag_ms": 0})
            if found.is_error:
                return tools, found, None
            hit = found.structured_content["hits"][0]
            doc = await session.call_tool("get_document",
                                          {"source": hit["source"], "key": hit["doc_key"]})
            return tools, found, doc


@pytest.mark.slow
def test_mcp_server_over_stdio_lists_tools_and_answers_with_citations(
        served: tuple[Project, str]) -> None:
    project, base = served
    # the key from the project's config, as `freshrag serve` of that config requires it
    tools, found, doc = asyncio.run(_mcp_session(project, "--url", base,
                                                 "--config", str(project.config)))
    by_name = {t.name: t for t in tools.tools}
    assert {"search", "get_document"} <= set(by_name)
    assert {"query", "k", "mode", "source", "max_lag_ms"} <= set(
        by_name["search"].input_schema["properties"])
    assert not found.is_error, found.content
    hits = found.structured_content["hits"]
    assert hits[0]["cite"] == f"docs:{WANT}" and "150 EUR" in hits[0]["text"]
    assert found.structured_content["lag_ms"] == 0
    assert WANT in found.content[0].text  # the text an agent reads cites it too
    assert not doc.is_error and "travel desk" in doc.structured_content["text"]
    tools, refused, _ = asyncio.run(_mcp_session(project, "--url", base, "--api-key", "bad"))
    assert refused.is_error and "401" in refused.content[0].text, refused.content


class TestLangChainStandard(RetrieversIntegrationTests):
    """langchain-tests' own retriever suite, on the served project. It may not be overridden;
    its async test is unmarked (it expects pytest-asyncio's auto mode), so the whole class is
    marked and the mark's warning on its sync tests is silenced."""

    pytestmark = [pytest.mark.slow, pytest.mark.asyncio, pytest.mark.filterwarnings(
        "ignore:.*marked with '@pytest.mark.asyncio' but it is not an async function")]

    @property
    def retriever_constructor(self) -> type[LangChainRetriever]:
        return LangChainRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"url": SERVED["url"], "api_key": KEY}

    @property
    def retriever_query_example(self) -> str:
        return QUERY

