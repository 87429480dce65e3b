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
