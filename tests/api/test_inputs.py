"""Bad inputs get a 4xx naming the problem; never a 5xx, never an echo of a huge input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def client(make_client: Any) -> TestClient:
    client, _, _ = make_client(max_body_bytes=65_536)
    return client


@pytest.mark.parametrize(("body", "field"), [
    ({"query": "x", "k": 0}, "k"),
    ({"query": "x", "k": 10000}, "k"),
    ({"query": "x", "k": "five"}, "k"),
    ({"query": "x", "k": 2.5}, "k"),
    ({"query": ""}, "query"),
    ({"query": "   \n"}, "query"),
    ({"query": "x" * 2001}, "query"),
    ({"query": 42}, "query"),
    ({"k": 3}, "query"),
    ({"query": "x", "mode": "fuzzy"}, "mode"),
    ({"query": "x", "alpha": 1.5}, "alpha"),
    ({"query": "x", "max_lag_ms": -1}, "max_lag_ms"),
    ({"query": "x", "filters": {"source": ""}}, "filters.source"),
    ({"query": "x", "filters": {"metadata": {"a": {"nested": 1}}}}, "filters.metadata"),
    ({"query": "x", "filters": {"sauce": "docs"}}, "filters.sauce"),
    ({"query": "x", "top_k": 3}, "top_k"),
])
def test_bad_search_bodies_are_422_naming_the_field(client: TestClient, body: Any,
                                                    field: str) -> None:
    res = client.post("/search", json=body)
    assert res.status_code == 422, res.text
    data = res.json()
    assert any(e["field"].startswith(field) for e in data["errors"]), data
    assert field.split(".")[0] in data["detail"]
    assert len(res.content) < 4000  # the input is not echoed back


@pytest.mark.parametrize(("params", "field"), [
    ({"q": "x", "k": "0"}, "k"), ({"q": "x", "k": "10000"}, "k"), ({"q": ""}, "q"),
    ({}, "q"), ({"q": "x", "k": "many"}, "k"), ({"q": "x" * 5000}, "q"),
])
def test_bad_get_params_are_422(client: TestClient, params: Any, field: str) -> None:
    res = client.get("/search", params=params)
    assert res.status_code == 422, res.text
    assert any(e["field"] == field for e in res.json()["errors"])


def test_megabyte_query_is_413(client: TestClient) -> None:
    res = client.post("/search", json={"query": "x" * 1_000_000})
    assert res.status_code == 413
    assert "bytes" in res.json()["detail"] and len(res.content) < 1000


def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"query": "'
        for _ in range(100):
            yield b"x" * 10_000
        yield b'"}'

    res = client.post("/search", content=chunks(), headers={"Content-Type": "application/json"})
    assert res.status_code == 413, res.text


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'"query"', b"null", b""])
def test_malformed_bodies_are_422(client: TestClient, raw: bytes) -> None:
    res = client.post("/search", content=raw, headers={"Content-Type": "application/json"})
    assert res.status_code == 422, res.text
    assert res.json()["errors"]
