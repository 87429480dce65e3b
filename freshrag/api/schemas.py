"""Request and response models of the HTTP API (they are its OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    StrictBool,
    StrictInt,
    field_validator,
)

from freshrag.model import Mode

MAX_QUERY_CHARS = 2000
MAX_K = 100
MAX_LAG_MS = 86_400_000

MetaValue = Annotated[str, Field(max_length=1000)]
MetaKey = Annotated[str, Field(min_length=1, max_length=200)]
SourceName = Annotated[str, Field(min_length=1, max_length=200)]


class SearchFilters(BaseModel):
    """Narrow a search; every given filter must match."""

    model_config = ConfigDict(extra="forbid")
    source: SourceName | None = Field(default=None, description="Only this source.")
    doc_key_prefix: str | None = Field(default=None, min_length=1, max_length=1000,
                                       description="Only documents whose key starts with this.")
    metadata: dict[MetaKey, StrictBool | StrictInt | FiniteFloat | MetaValue] = Field(
        default_factory=dict, max_length=20, description="Metadata fields that must be equal.")


class Freshen(BaseModel):
    """What the caller requires of freshness; the server waits (bounded) or answers 503."""

    max_lag_ms: int | None = Field(
        default=None, ge=0, le=MAX_LAG_MS,
        description="Answer only when no queried source lags more than this (0: nothing pending).")
    min_watermark: FiniteFloat | None = Field(
        default=None, ge=0, le=1e11,
        description="Answer only when every change made before this time (unix seconds) "
                    "is searchable.")


class SearchRequest(Freshen):
    """POST /search body."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"query": "how do I request travel reimbursement?", "k": 5},
        {"query": "security incident", "k": 3, "mode": "hybrid", "alpha": 0.7,
         "filters": {"source": "docs", "doc_key_prefix": "policies/"}, "max_lag_ms": 1000},
    ]})
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="What to look for.")
    k: int = Field(default=5, ge=1, le=MAX_K, description="How many hits.")
    mode: Mode = Field(default=Mode.hybrid,
                       description="hybrid (vector + keyword), vector or keyword.")
    alpha: FiniteFloat | None = Field(
        default=None, ge=0.0, le=1.0,
        description="Hybrid weight: 1 is pure vector, 0 pure keyword (default: index.alpha).")
    filters: SearchFilters | None = None

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class SearchParams(Freshen):
    """GET /search query parameters (a convenience for curl and browsers)."""

    model_config = ConfigDict(extra="forbid")
    q: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="What to look for.")
    k: int = Field(default=5, ge=1, le=MAX_K)
    mode: Mode = Mode.hybrid
    alpha: FiniteFloat | None = Field(default=None, ge=0.0, le=1.0)
    source: SourceName | None = None
    doc_key_prefix: str | None = Field(default=None, min_length=1, max_length=1000)

    @field_validator("q")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class HitOut(BaseModel):
    text: str
    score: float
    source: str
    doc_key: str
    location: str
    title: str
    page: int | None
    metadata: dict[str, Any]
    source_modified_at: float = Field(description="When the source last changed it (unix s).")
    indexed_at: float = Field(description="When this chunk was written to the index (unix s).")


class SourceFreshness(BaseModel):
    """How fresh one source's part of the index is, checked at `checked_at`."""

    watermark: float | None = Field(
        description="Every change the source made before this time (unix s) is searchable.")
    lag_ms: float | None = Field(
        description="0 when nothing is pending; else now minus the oldest pending change. "
                    "null when unknown.")
    pending: int | None = Field(description="Changed, new or deleted items not yet indexed "
                                            "(null when the source cannot be checked cheaply).")
    failed: int | None = Field(default=0, description="Items that changed but could not be "
                               "indexed (see /status errors); they do not count as pending. "
                               "null (like pending and capture) for a client that is not an "
                               "admin: counts are for admins.")
    method: Literal["scan", "poll", "last_poll", "watermark", "none"] = Field(
        description="What lag is based on. scan (folders): the files were compared with the "
                    "ledger now; poll (tables): the table was polled and reconciled now, for a "
                    "freshness demand; last_poll (tables): the last poll the watcher or a sync "
                    "completed; watermark: the last sync; none: the source cannot be checked. "
                    "lag_ms is null when unknown.")
    checked_at: float
    last_sync_end: float | None
    detail: str | None = None
    capture: dict[str, Any] | None = Field(
        default=None, description="Tables with a change stream: its mode and position — "
        "binlog: saved and server position, lag_bytes, purged_gaps; logical: slot, lag_bytes, "
        "retained_wal_bytes; changelog: backlog_rows.")


class SearchResponse(BaseModel):
    hits: list[HitOut]
    freshness: dict[str, SourceFreshness]
    took_ms: float


class StaleResponse(BaseModel):
    """503: the index did not catch up within the server's wait bound."""

    detail: str
    freshness: dict[str, SourceFreshness]
    waited_ms: float


class ErrorOut(BaseModel):
    detail: str


class FieldError(BaseModel):
    field: str
    location: str
    message: str


class ValidationOut(BaseModel):
    detail: str
    errors: list[FieldError]


class SourceError(BaseModel):
    key: str
    error: str
    at: float


class CanaryStatus(BaseModel):
    """A source's canary: written every interval by the watcher, then found through search."""

    enabled: bool
    late: bool
    interval_s: float
    late_after_s: float
    last_write: float | None
    last_success: float | None
    last_latency_s: float | None = Field(description="Seconds from writing the canary to "
                                         "finding it through search, last time")
    missed: int = 0
    indexed: bool = False
    detail: str


class SourceStatus(BaseModel):
    source: str
    configured: bool
    documents: int | None = Field(description="null for a client that is not an admin")
    chunks: int | None = Field(description="null for a client that is not an admin")
    last_sync_start: float | None
    last_sync_end: float | None
    last_report: dict[str, Any] | None
    freshness: SourceFreshness
    errors: list[SourceError]
    canary: CanaryStatus | None = None


class StatusResponse(BaseModel):
    sources: list[SourceStatus]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    ready: bool
    checks: dict[str, str]
    degraded: bool = Field(False, description="A canary is late (`checks` names the source): "
                           "search answers, from an index that may be behind. 200 unless "
                           "`strict=true` is given, then 503")


class DocumentOut(BaseModel):
    source: str
    doc_key: str
    chunks: list[HitOut]
