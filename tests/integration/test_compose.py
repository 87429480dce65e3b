"""docker-compose.yml validates with Debian's docker-compose 1.29 (no Docker engine needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def compose_binary() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI: docker-compose is required (apt-get install -y docker-compose)")
        pytest.skip("docker-compose not installed (apt-get install -y docker-compose); "
                    "CI=true makes this a failure")
    return binary


KEY = "compose-test-key"


def resolved(**env: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` with the environment a user's .env would give (and no other
    WEAVIATE_*/FRESHRAG_* of ours); an empty --env-file so a developer's .env is not read."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("WEAVIATE_", "FRESHRAG_", "POSTGRES_"))}
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        return subprocess.run([compose_binary(), "-f", str(COMPOSE), "--project-directory",
                               str(ROOT), "--env-file", empty.name, "config"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env={**clean, **env})


def services_of(**env: str) -> dict[str, Any]:
    result = resolved(**env)
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout)["services"])


def test_compose_file_validates() -> None:
    assert resolved(WEAVIATE_API_KEY=KEY).returncode == 0


def test_no_api_key_no_stack() -> None:
    result = resolved()
    assert result.returncode != 0 and "WEAVIATE_API_KEY" in result.stderr


def test_weaviate_is_locked_down() -> None:
    """Auto-schema off, API-key auth on with anonymous access off, the freshrag services given
    the key and the server's QUERY_MAXIMUM_RESULTS, every published port on loopback."""
    services = services_of(WEAVIATE_API_KEY=KEY)
    env = services["weaviate"]["environment"]
    assert env["AUTOSCHEMA_ENABLED"] == "false"
    assert env["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"] == "false"
    assert env["AUTHENTICATION_APIKEY_ENABLED"] == "true"
    assert env["AUTHENTICATION_APIKEY_ALLOWED_KEYS"] == KEY
    assert env["QUERY_MAXIMUM_RESULTS"] == "10000"
    for name in ("freshrag-watch", "freshrag-api"):
        fenv = services[name]["environment"]
        assert fenv["FRESHRAG_INDEX__API_KEY"] == KEY
        assert fenv["FRESHRAG_INDEX__QUERY_MAXIMUM_RESULTS"] == env["QUERY_MAXIMUM_RESULTS"]
    published = [str(p) for svc in services.values() for p in svc.get("ports", [])]
    assert published and all(p.startswith("127.0.0.1:") for p in published), published
    changed = services_of(WEAVIATE_API_KEY=KEY, WEAVIATE_QUERY_MAXIMUM_RESULTS="500",
                          WEAVIATE_BIND="0.0.0.0")
    assert changed["weaviate"]["environment"]["QUERY_MAXIMUM_RESULTS"] == "500"
    assert changed["freshrag-api"]["environment"]["FRESHRAG_INDEX__QUERY_MAXIMUM_RESULTS"] == "500"
    assert all(str(p).startswith("0.0.0.0:") for p in changed["weaviate"]["ports"])
    assert all(str(p).startswith("127.0.0.1:") for p in changed["freshrag-api"]["ports"])


def test_the_example_env_file_is_complete() -> None:
    """Every variable weaviate.env.example sets is one docker-compose.yml reads."""
    example = (ROOT / "weaviate.env.example").read_text()
    names = [line.split("=", 1)[0] for line in example.splitlines()
             if line and not line.startswith("#")]
    text = COMPOSE.read_text()
    assert "WEAVIATE_API_KEY" in names
    assert all("${" + n in text for n in names), names


def test_stack_shape() -> None:
    """What the issue asks of the stack, checked on the resolved file."""
    services = services_of(WEAVIATE_API_KEY=KEY)
    assert set(services) == {"weaviate", "postgres", "prefect-server", "freshrag-watch",
                             "freshrag-api"}
    for name, svc in services.items():
        assert "healthcheck" in svc, name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert cond == {"condition": "service_healthy"}, (name, dep)
    weaviate = services["weaviate"]
    tag = weaviate["image"].rsplit(":", 1)[1]
    assert tag[0].isdigit(), "Weaviate must be pinned to a version"
    assert weaviate["environment"]["DEFAULT_VECTORIZER_MODULE"] == "none"
    assert any("50051" in str(p) for p in weaviate["ports"])
    assert any("/var/lib/weaviate" in str(v) for v in weaviate["volumes"])
    assert "postgresql" in services["prefect-server"]["environment"][
        "PREFECT_API_DATABASE_CONNECTION_URL"]
    assert any("4200" in str(p) for p in services["prefect-server"]["ports"])
    assert services["freshrag-watch"]["command"] == ["freshrag", "watch"]
    assert services["freshrag-api"]["command"][:2] == ["freshrag", "serve"]
    for name in ("freshrag-watch", "freshrag-api"):
        env = services[name]["environment"]
        assert env["FRESHRAG_INDEX__URL"].startswith("weaviate://weaviate:")
        assert env["FRESHRAG_LEDGER_URL"].startswith("postgresql")
        assert set(services[name]["depends_on"]) == {"weaviate", "postgres", "prefect-server"}


def test_dockerfile_installs_the_cpu_torch_wheel() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "download.pytorch.org/whl/cpu" in text
    assert text.index("whl/cpu") < text.index("pip install .")
