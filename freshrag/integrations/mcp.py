"""The MCP server of `freshrag mcp`: `search` and `get_document` tools over a running
`freshrag serve` (stdio; stdout is the protocol, logs go to stderr)."""

from __future__ import annotations

from typing import Literal

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from freshrag.client import AsyncClient, FreshragError

INSTRUCTIONS = (
    "Search freshrag's index of the user's documents and tables. Cite each hit by its "
    "`cite` (source:doc_key). Pass max_lag_ms to require results no older than that: 0 means "
    "every change the sources made is in the results (else the tool says how far behind the "
    "index is).")


class CitedHit(BaseModel):
    cite: str = Field(description="source:doc_key, how to cite this hit")
    source: str
    doc_key: str
    title: str
    page: int | None
    score: float
    text: str
    source_modified_at: float = Field(description="when the source last changed it (unix s)")
    indexed_at: float = Field(description="when it was indexed (unix s)")


class SearchHits(BaseModel):
    hits: list[CitedHit]
    watermark: float | None = Field(
        description="every change made before this time (unix s) is in these hits")
    lag_ms: float | None = Field(description="how far the index is behind its sources")


class DocumentText(BaseModel):
    cite: str
    source: str
    doc_key: str
    title: str
    chunks: int
    text: str = Field(description="the document's indexed text, its chunks in order")


def build(url: str, api_key: str, timeout: float = 30.0) -> MCPServer:
    """The server; each tool call is one request to `freshrag serve` at `url`."""
    server: MCPServer = MCPServer("freshrag", instructions=INSTRUCTIONS)

    def client() -> AsyncClient:
        return AsyncClient(url, api_key, timeout=timeout)

    @server.tool()
    async def search(query: str, k: int = 5,
                     mode: Literal["hybrid", "vector", "keyword"] = "hybrid",
                     source: str | None = None, max_lag_ms: int | None = None) -> SearchHits:
        """Search the indexed documents; each hit cites source and doc_key."""
        try:
            async with client() as c:
                result = await c.search(query, k, mode=mode, source=source,
                                        max_lag_ms=max_lag_ms)
        except FreshragError as exc:
            raise ToolError(f"freshrag: {exc}") from exc
        return SearchHits(
            hits=[CitedHit(cite=f"{h.source}:{h.doc_key}", source=h.source, doc_key=h.doc_key,
                           title=h.title, page=h.page, score=h.score, text=h.text,
                           source_modified_at=h.source_modified_at, indexed_at=h.indexed_at)
                  for h in result.hits],
            watermark=result.watermark, lag_ms=result.lag_ms)

    @server.tool()
    async def get_document(source: str, key: str) -> DocumentText:
        """The whole indexed text of one document, by the source and doc_key a hit cites."""
        try:
            async with client() as c:
                doc = await c.document(source, key)
        except FreshragError as exc:
            raise ToolError(f"freshrag: {exc}") from exc
        return DocumentText(cite=f"{doc.source}:{doc.doc_key}", source=doc.source,
                            doc_key=doc.doc_key,
                            title=doc.chunks[0].title if doc.chunks else doc.doc_key,
                            chunks=len(doc.chunks), text="\n\n".join(c.text for c in doc.chunks))

    return server
