"""[[api.clients]]: config errors name the key, one key names one client, gateways, admins."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from freshrag.api import create_app
from freshrag.api.auth import Authenticator
from freshrag.config import ConfigError, SourceConfig, load_settings
from freshrag.config_api import client_keys
from tests.e2e.userpath import FRESHRAG, user_env

CLIENTS = """
[api]
trusted_principal_header = "X-Forwarded-Principals"

[[api.clients]]
name = "alice"
key = "key-alice"
principals = ["uid:1001"]

[[api.clients]]
name = "ops"
key_env = "OPS_KEY"
admin = true

[[api.clients]]
name = "portal"
key = "key-portal"
gateway = true
"""


def load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "freshrag.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(config=path)


@pytest.mark.parametrize(("text", "message"), [
    ('[[api.clients]]\nname = "a"\nkey = "k"\nkey_env = "E"\n',
     "api.clients.a: give exactly one of key or key_env"),
    ('[[api.clients]]\nname = "a"\n', "api.clients.a: give exactly one of key or key_env"),
    ('[[api.clients]]\nname = "a"\nkey = "k"\nprincipals = ["uid:1, uid:2"]\n',
     "api.clients.a.principals: principal 'uid:1, uid:2'"),
    ('[[api.clients]]\nname = "a"\nkey = "k"\nadmn = true\n', "api.clients.a.admn: Extra"),
    ('[[api.clients]]\nname = "a"\nkey = "k"\nprincipals = ["alice"]\n',
     "api.clients.a.principals: principal 'alice': not kind:name"),
    ('[[api.clients]]\nname = "a"\nkey = "k"\n[[api.clients]]\nname = "a"\nkey = "j"\n',
     "api.clients: duplicate name 'a'"),
    ('[[api.clients]]\nname = "a"\nkey = "k"\ngateway = true\n',
     "api.clients.a.gateway: needs api.trusted_principal_header"),
    ('[api]\ntrusted_principal_header = "Authorization"\n', "api.trusted_principal_header:"),
    ('[api]\nclient = []\n', "api.client: Extra"),
])
def test_bad_client_config_is_one_line_naming_the_key(tmp_path: Path, text: str,
                                                     message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_keys_resolve_at_serve_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPS_KEY", raising=False)
    settings = load(tmp_path, CLIENTS)  # loading (sync, status) does not need the keys
    with pytest.raises(ConfigError, match="api.clients.ops.key_env: environment variable "
                                          "OPS_KEY is not set"):
        client_keys(settings)
    monkeypatch.setenv("OPS_KEY", "key-alice")
    with pytest.raises(ConfigError, match="api.clients.ops: same key as 'alice'"):
        client_keys(settings)


def test_serve_without_a_client_key_exits_2(tmp_path: Path) -> None:
    (tmp_path / "freshrag.toml").write_text(CLIENTS, encoding="utf-8")
    done = subprocess.run([str(FRESHRAG), "serve", "--config", str(tmp_path / "freshrag.toml")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=user_env())
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == ("freshrag: api.clients.ops.key_env: environment variable "
                                   "OPS_KEY is not set")


def auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api_key: str = "") -> Authenticator:
    monkeypatch.setenv("OPS_KEY", "key-ops")
    settings = load(tmp_path, CLIENTS)
    settings.api_key = api_key
    return Authenticator(settings)


def status_of(fn: Any) -> int:
    try:
        fn()
    except HTTPException as exc:
        return exc.status_code
    return 200


def test_one_key_one_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = auth(tmp_path, monkeypatch, api_key="old-key")
    alice = a.caller(["key-alice"], {})
    assert (alice.name, alice.admin, alice.principals) == ("alice", False,
                                                           frozenset({"uid:1001"}))
    assert a.caller(["key-ops"], {}).admin and a.caller(["key-ops"], {}).principals is None
    old = a.caller(["old-key"], {})  # the single api_key of before: an admin client
    assert (old.name, old.admin) == ("api_key", True)
    for given in ([], ["key-alic"], ["key-alice", "key-ops"], ["key-alice", "wrong"], [""]):
        assert status_of(lambda g=given: a.caller(g, {})) == 401, given
    assert a.caller(["key-alice", "key-alice"], {}).name == "alice"


def test_the_principal_header_is_trusted_from_a_gateway_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = auth(tmp_path, monkeypatch)
    hdr = {"X-Forwarded-Principals": " uid:1002 , gid:2001,, "}
    portal = a.caller(["key-portal"], hdr)
    assert (portal.admin, portal.principals) == (False, frozenset({"uid:1002", "gid:2001"}))
    assert a.caller(["key-portal"], {}).principals == frozenset()  # its own: none
    assert a.caller(["key-portal"], {"X-Forwarded-Principals": ""}).principals == frozenset()
    # alice's own principals, whatever she sends; an admin stays itself
    assert a.caller(["key-alice"], hdr).principals == frozenset({"uid:1001"})
    assert a.caller(["key-ops"], hdr).admin
    bad = {"X-Forwarded-Principals": "uid:1,\x01x"}
    assert status_of(lambda: a.caller(["key-portal"], bad)) == 400
    many = {"X-Forwarded-Principals": ",".join(f"uid:{n}" for n in range(101))}
    assert status_of(lambda: a.caller(["key-portal"], many)) == 400


def test_an_open_server_fails_closed_when_a_source_has_permissions(tmp_path: Path) -> None:
    settings = load_settings(config=None, home=tmp_path)
    assert Authenticator(settings).caller([], {}).admin  # no keys, no permissions: as before
    settings.sources = [SourceConfig(name="docs", type="folder", path=str(tmp_path),
                                     permissions="posix")]
    anon = Authenticator(settings).caller([], {})
    assert (anon.admin, anon.principals) == (False, frozenset())


def test_admin_only_endpoints_and_reduced_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 embedder: Any) -> None:
    from freshrag.engine import Engine

    monkeypatch.setenv("OPS_KEY", "key-ops")
    settings = load(tmp_path, CLIENTS)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Hello\n\nA short note about lunch.\n")
    settings.sources = [SourceConfig(name="docs", type="folder", path=str(tmp_path / "docs"))]
    engine = Engine(settings, embedder=embedder)
    engine.sync("docs")
    try:
        with TestClient(create_app(settings, engine=engine),
                        raise_server_exceptions=False) as c:
            alice, ops = {"X-API-Key": "key-alice"}, {"X-API-Key": "key-ops"}
            assert c.get("/metrics", headers=alice).status_code == 403
            assert c.get("/metrics", headers=ops).status_code == 200
            assert c.get("/metrics").status_code == 401
            row = c.get("/status", headers=alice).json()["sources"][0]
            assert (row["documents"], row["chunks"], row["errors"]) == (None, None, [])
            assert row["freshness"]["lag_ms"] == 0 and row["freshness"]["pending"] is None
            full = c.get("/status", headers=ops).json()["sources"][0]
            assert (full["documents"], full["freshness"]["pending"]) == (1, 0)
    finally:
        engine.close()
