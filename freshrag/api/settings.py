"""Serving settings (FRESHRAG_API_* environment variables); the rest comes from Settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """Limits and freshness timing of `freshrag serve`."""

    model_config = SettingsConfigDict(env_prefix="FRESHRAG_API_", extra="ignore")

    # Longest a request with max_lag_ms / min_watermark waits for the index to catch up.
    max_wait_ms: int = Field(default=5000, ge=0, le=600_000)
    # How often a waiting request re-checks the sources.
    poll_ms: int = Field(default=100, ge=10, le=10_000)
    # A request without a freshness demand reuses a source check this recent.
    freshness_ttl_ms: int = Field(default=1000, ge=0, le=600_000)
    max_body_bytes: int = Field(default=65_536, ge=1024)
    # Searches (embed + index query) running at once; more wait for a slot.
    search_threads: int = Field(default=8, ge=1, le=256)
