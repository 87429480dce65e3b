"""Search, status, documents, health and ready through the app (TestClient, real model)."""

from __future__ import annotations

import time
from typing import Any

import pytest


def test_post_search_finds_the_document_with_freshness(make_client: Any) -> None:
    client, _, _ = make_client()
    res = client.post("/search", json={"query": "how long does reimbursement take?", "k": 3})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["hits"][0]["doc_key"] == "policies/travel.md"
    hit = body["hits"][0]
    assert set(hit) >= {"text", "score", "source", "doc_key", "location", "title", "metadata",
                        "source_modified_at", "indexed_at"}
    assert hit["source"] == "docs" and hit["location"].endswith("travel.md")
    assert hit["indexed_at"] >= hit["source_modified_at"] - 1
    fresh = body["freshness"]["docs"]
    assert fresh["lag_ms"] == 0 and fresh["pending"] == 0 and fresh["method"] == "scan"
    assert fresh["watermark"] <= time.time()
    assert body["took_ms"] >= 0


def test_get_search_and_modes_and_filters(make_client: Any) -> None:
    client, _, _ = make_client()
    res = client.get("/search", params={"q": "lost laptop phishing", "k": 2})
    assert res.status_code == 200, res.text
    assert res.json()["hits"][0]["doc_key"] == "policies/security.md"
    for mode in ("vector", "keyword", "hybrid"):
        body = client.post("/search", json={"query": "pasta lunch", "mode": mode}).json()
        assert body["hits"][0]["doc_key"] == "notes.txt", mode
    only = client.post("/search", json={"query": "laptop", "k": 10,
                                        "filters": {"doc_key_prefix": "guides/"}}).json()
    assert {h["doc_key"] for h in only["hits"]} == {"guides/onboarding.md"}
    by_source = client.post("/search", json={"query": "laptop", "filters": {"source": "docs"}})
    assert by_source.status_code == 200 and list(by_source.json()["freshness"]) == ["docs"]
    unknown = client.post("/search", json={"query": "laptop", "filters": {"source": "nope"}})
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
    none = client.post("/search", json={"query": "laptop", "filters": {"metadata": {"x": 1}}})
    assert none.status_code == 200 and none.json()["hits"] == []


def test_status_health_ready_page_openapi(make_client: Any) -> None:
    client, _, _ = make_client()
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json() == {
        "ready": True, "checks": {"model": "ok", "ledger": "ok", "index": "ok"},
        "degraded": False}
    rows = client.get("/status").json()["sources"]
    assert [r["source"] for r in rows] == ["docs"]
    row = rows[0]
    assert row["documents"] == 4 and row["chunks"] >= 4 and row["configured"]
    assert row["freshness"]["pending"] == 0 and row["errors"] == []
    assert row["last_sync_end"] >= row["last_sync_start"]
    page = client.get("/")
    assert page.status_code == 200 and "<form" in page.text and "/search" in page.text
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]
    schema = spec["components"]["schemas"]["SearchRequest"]
    assert "examples" in schema or "examples" in body
    assert client.get("/docs").status_code == 200


def test_documents_endpoint_and_no_path_traversal(make_client: Any) -> None:
    client, _, _ = make_client()
    doc = client.get("/documents/docs/policies/travel.md")
    assert doc.status_code == 200, doc.text
    chunks = doc.json()["chunks"]
    assert chunks and all(c["doc_key"] == "policies/travel.md" for c in chunks)
    assert "travel desk" in " ".join(c["text"] for c in chunks)
    assert client.get("/documents/docs/policies/nope.md").status_code == 404
    assert client.get("/documents/other/policies/travel.md").status_code == 404
    for key in ("..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "policies/..%2Ftravel.md"):
        res = client.get(f"/documents/docs/{key}")
        assert res.status_code == 404, (key, res.text)
        assert "root:" not in res.text


def test_errors_are_generic_and_logged(make_client: Any, monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    from freshrag.index import IndexUnavailable

    client, engine, _ = make_client()

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret /etc/internal detail")

    monkeypatch.setattr(engine, "search", boom)
    res = client.post("/search", json={"query": "travel"})
    assert res.status_code == 500
    assert "secret" not in res.text and "Traceback" not in res.text
    assert "secret /etc/internal detail" in caplog.text

    def down(*_: Any, **__: Any) -> Any:
        raise IndexUnavailable("weaviate at http://x:8080: connection refused")

    monkeypatch.setattr(engine, "search", down)
    res = client.post("/search", json={"query": "travel"})
    assert res.status_code == 503 and res.headers["retry-after"]
