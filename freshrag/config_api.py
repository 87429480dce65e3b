"""The `[api]` settings: clients, their keys and principals, the trusted principal header."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from freshrag.config_types import ConfigError, Name

if TYPE_CHECKING:
    from freshrag.config import Settings

PRINCIPAL_MAX = 200
# An HTTP header name (RFC 9110 token); the two credential headers cannot carry principals.
HEADER_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})


def check_principal(value: str) -> str:
    """A principal as a client or a gateway header names it (`uid:1001`, `group:hr`)."""
    if not value or value != value.strip():
        raise ValueError(f"principal {value!r}: empty or with surrounding spaces")
    from connectors.permissions import PRINCIPAL_RE

    if len(value) > PRINCIPAL_MAX or not (value == "everyone" or PRINCIPAL_RE.match(value)):
        raise ValueError(f"principal {value[:40]!r}: not kind:name (uid:1001, group:hr) or "
                         f"everyone, at most {PRINCIPAL_MAX} characters")
    return value


class ClientConfig(BaseModel):
    """One `[[api.clients]]` table: an API caller, its key and the principals it acts as."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    key: str = Field("", repr=False)
    key_env: str = ""  # the key is read from this environment variable when serving starts
    principals: list[str] = []
    admin: bool = False  # sees every document and the counts of /status and /metrics
    gateway: bool = False  # may name the end user's principals in api.trusted_principal_header

    @field_validator("principals")
    @classmethod
    def _principals(cls, value: list[str]) -> list[str]:
        return [check_principal(p) for p in value]

    @model_validator(mode="after")
    def _one_key(self) -> ClientConfig:
        if bool(self.key) == bool(self.key_env):
            raise ValueError("give exactly one of key or key_env")
        return self

    def secret(self) -> str:
        """The client's API key; ConfigError names key_env when it is not set."""
        if self.key:
            return self.key
        value = os.environ.get(self.key_env, "")
        if not value:
            raise ConfigError(f"api.clients.{self.name}.key_env: environment variable "
                              f"{self.key_env} is not set")
        return value


class ApiConfig(BaseModel):
    """The `[api]` table: who may call the API (see also the top-level `api_key`)."""

    model_config = ConfigDict(extra="forbid")
    clients: list[ClientConfig] = []
    # Off when empty. When set, a request from a `gateway = true` client may carry the end
    # user's principals in this header (comma-separated); never read from another client.
    trusted_principal_header: str = ""

    @field_validator("trusted_principal_header")
    @classmethod
    def _header(cls, value: str) -> str:
        if value and (not HEADER_RE.match(value) or value.lower() in CREDENTIAL_HEADERS):
            raise ValueError(f"{value!r} is not a header name freshrag can trust "
                             "(a token, not Authorization or X-API-Key)")
        return value


def check_clients(settings: Settings, origin: str) -> None:
    names = [c.name for c in settings.api.clients]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{origin}: api.clients: duplicate name {dupes[0]!r}")
    for c in settings.api.clients:
        if c.gateway and not settings.api.trusted_principal_header:
            raise ConfigError(f"api.clients.{c.name}.gateway: needs "
                              "api.trusted_principal_header to be set")


def client_keys(settings: Settings) -> list[tuple[ClientConfig, str]]:
    """Every client with its key (the top-level api_key is an admin client named `api_key`);
    ConfigError for a key_env not set or a key two clients share."""
    clients = list(settings.api.clients)
    if settings.api_key:
        clients.append(ClientConfig(name="api_key", key=settings.api_key, admin=True))
    pairs = [(c, c.secret()) for c in clients]
    seen: dict[str, str] = {}
    for c, key in pairs:
        if key in seen:
            raise ConfigError(f"api.clients.{c.name}: same key as {seen[key]!r} "
                              "(one key per client)")
        seen[key] = c.name
    return pairs
