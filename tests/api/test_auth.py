"""The optional API key: Bearer or X-API-Key on everything but /health."""

from __future__ import annotations

from typing import Any

PROTECTED = [("POST", "/search", {"query": "travel"}), ("GET", "/search?q=travel", None),
             ("GET", "/status", None), ("GET", "/ready", None), ("GET", "/metrics", None),
             ("GET", "/documents/docs/notes.txt", None)]


def test_key_required_when_set(make_client: Any) -> None:
    client, _, _ = make_client(api_key="s3cret-key")
    assert client.get("/health").status_code == 200
    for method, url, body in PROTECTED:
        res = client.request(method, url, json=body)
        assert res.status_code == 401, (url, res.text)
        assert "API key" in res.json()["detail"]
        assert res.headers["www-authenticate"] == "Bearer"
        for headers in ({"Authorization": "Bearer wrong"}, {"X-API-Key": "s3cret-ke"},
                        {"Authorization": "Basic czNjcmV0LWtleQ=="}, {"X-API-Key": ""},
                        {"Authorization": "Bearer wrong", "X-API-Key": "s3cret-key"}):
            assert client.request(method, url, json=body, headers=headers).status_code == 401
        for headers in ({"Authorization": "Bearer s3cret-key"}, {"X-API-Key": "s3cret-key"},
                        {"Authorization": "Bearer s3cret-key", "X-API-Key": "s3cret-key"}):
            res = client.request(method, url, json=body, headers=headers)
            assert res.status_code == 200, (url, headers, res.text)


def test_no_key_configured_means_open(make_client: Any) -> None:
    client, _, _ = make_client(api_key="")
    for method, url, body in PROTECTED:
        assert client.request(method, url, json=body).status_code == 200, url


def test_key_from_environment(monkeypatch: Any, tmp_path: Any) -> None:
    from freshrag.config import load_settings

    monkeypatch.setenv("FRESHRAG_API_KEY", "from-env")
    assert load_settings(config=None, home=tmp_path).api_key == "from-env"
