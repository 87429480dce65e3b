"""freshrag.client against the real app (in process) and against its MockServer: the same
calls, the same typed answers and the same exceptions, so the mock users test with is true."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from freshrag.api import create_app
from freshrag.api.settings import ApiSettings
from freshrag.client import (
    AsyncClient,
    Client,
    FreshragError,
    InvalidRequest,
    NotFound,
    SearchResult,
    StaleIndex,
    TooLarge,
    Unauthorized,
    Unreachable,
)
from freshrag.client.testing import MockServer
from freshrag.embed import SentenceTransformerEmbedder
from freshrag.engine import Engine
from tests.api.conftest import DOCS, settings_for, write_docs

KEY = "s3cret"
Make = Callable[..., tuple[httpx.BaseTransport, Callable[[], None]]]


def _mock() -> tuple[httpx.BaseTransport, Callable[[], None]]:
    server = MockServer(api_key=KEY)
    for key, text in DOCS.items():
        server.add("docs", key, text, title=text.split("\n", 1)[0].lstrip("# "))
    return server.transport(), lambda: server.behind("docs", 7000)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder
        ) -> Iterator[tuple[TestClient, Path]]:
    """One synced folder and the real app on it (in process), for the whole module."""
    tmp = tmp_path_factory.mktemp("client")
    write_docs(tmp / "docs")
    engine = Engine(settings_for(tmp / "home", tmp / "docs", KEY), embedder=embedder)
    engine.sync("docs")
    with TestClient(create_app(engine.settings, engine=engine, api=ApiSettings(max_wait_ms=0)),
                    raise_server_exceptions=False) as test_client:
        yield test_client, tmp / "docs"
    engine.close()


@pytest.fixture(params=["app", "mock"])
def make(request: pytest.FixtureRequest) -> Make:
    """A transport to the real app or to MockServer, and a function that makes the docs
    source lag (the server answers at once: max_wait_ms=0)."""
    if request.param == "mock":
        return _mock
    test_client, folder = request.getfixturevalue("app")

    def real() -> tuple[httpx.BaseTransport, Callable[[], None]]:
        def relay(request: httpx.Request) -> httpx.Response:
            # TestClient runs the app in process (it may be built on another httpx).
            got = test_client.request(request.method, request.url.raw_path.decode(),
                                      headers=dict(request.headers), content=request.read())
            return httpx.Response(got.status_code, headers=dict(got.headers),
                                  content=got.content)
        return httpx.MockTransport(relay), lambda: (folder / "late.md").write_text("# Late\n")
    return real


def test_search_answers_typed_hits_with_freshness(make: Make) -> None:
    transport, _ = make()
    with Client("http://freshrag.test", api_key=KEY, transport=transport) as client:
        result = client.search("travel desk flights", k=2, source="docs", max_lag_ms=60_000)
        assert isinstance(result, SearchResult) and len(result.hits) == 2
        top = result.hits[0]
        assert (top.source, top.doc_key) == ("docs", "policies/travel.md")
        assert top.title and top.indexed_at > 0 and top.source_modified_at > 0
        assert result.watermark is not None and result.watermark <= time.time()
        assert result.lag_ms == 0 and set(result.freshness) == {"docs"}
        doc = client.document("docs", "policies/travel.md")
        assert doc.doc_key == "policies/travel.md" and "travel desk" in doc.chunks[0].text
        status = client.status()
        assert [s.source for s in status.sources] == ["docs"] and status.sources[0].documents == 4


def test_errors_say_what_the_server_said(make: Make) -> None:
    transport, _ = make()
    with Client("http://freshrag.test", api_key="wrong", transport=transport) as bad, \
            pytest.raises(Unauthorized, match=r"^401 .*missing or wrong API key") as err:
        bad.search("travel")
    assert err.value.status == 401
    with Client("http://freshrag.test", api_key=KEY, transport=transport) as client:
        with pytest.raises(NotFound, match=r"^404 .*unknown source 'nope'"):
            client.search("travel", source="nope")
        with pytest.raises(NotFound, match=r"^404 .*no document 'missing.md'"):
            client.document("docs", "missing.md")
        with pytest.raises(InvalidRequest, match=r"^422 .*k: ") as invalid:
            client.search("travel", k=500)
        assert [e["field"] for e in invalid.value.errors] == ["k"]
        with pytest.raises(TooLarge, match=r"^413 .*over 65536 bytes"):
            client.search("travel", filters={"metadata": {"x": "y" * 70_000}})


def test_async_client_answers_the_same(make: Make) -> None:
    transport, _ = make()

    async def run() -> tuple[SearchResult, str]:
        assert isinstance(transport, httpx.MockTransport)  # serves async requests too
        async with AsyncClient("http://freshrag.test", api_key=KEY, transport=transport) as c:
            result = await c.search("phishing email", k=1)
            try:
                await c.document("docs", "nope.md")
            except NotFound as exc:
                return result, str(exc)
        raise AssertionError("no 404")

    result, missing = asyncio.run(run())
    assert result.hits[0].doc_key == "policies/security.md"
    assert missing.startswith("404 ")


def test_a_lagging_source_raises_stale_index_with_the_lag(make: Make) -> None:
    transport, make_lag = make()
    make_lag()  # the module's last use of the real app: it stays behind from here on
    with Client("http://freshrag.test", api_key=KEY, transport=transport) as client, \
            pytest.raises(StaleIndex, match=r"^503 .*docs lags \d+ ms") as err:
        client.search("travel", max_lag_ms=0)
    stale = err.value
    assert stale.lag_ms is not None and stale.lag_ms > 0
    assert stale.freshness["docs"].pending == 1 and stale.retry_after == 1


def test_no_server_is_one_clear_error() -> None:
    with Client("http://127.0.0.1:9", timeout=2) as client, \
            pytest.raises(Unreachable, match=r"cannot reach freshrag at http://127.0.0.1:9"):
        client.status()
    assert issubclass(Unreachable, FreshragError)


def test_the_key_goes_as_one_bearer_header_and_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = MockServer(api_key="from-env")
    server.add("docs", "a.md", "alpha")
    monkeypatch.setenv("FRESHRAG_API_KEY", "from-env")
    with Client("http://freshrag.test", transport=server.transport()) as client:
        client.status()
    sent = server.requests[-1].headers
    assert sent["authorization"] == "Bearer from-env" and "x-api-key" not in sent
    with pytest.raises(ValueError, match="differ"):
        Client("http://x", api_key="").search("q", source="a", filters={"source": "b"})
