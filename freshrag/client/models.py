"""Typed results: the API's own response models, with the freshness a caller asks about."""

from __future__ import annotations

from freshrag.api.schemas import (
    DocumentOut,
    HitOut,
    SearchFilters,
    SearchResponse,
    SourceFreshness,
    SourceStatus,
    StatusResponse,
)

Hit = HitOut
Document = DocumentOut
Freshness = SourceFreshness
Status = StatusResponse
Filters = SearchFilters

__all__ = ["Document", "Filters", "Freshness", "Hit", "SearchResult", "SourceStatus", "Status"]


class SearchResult(SearchResponse):
    """POST /search's answer: `hits`, `freshness` per source, `took_ms`."""

    @property
    def watermark(self) -> float | None:
        """Every change made before this time (unix s) in every queried source is in these
        hits; None when a source's watermark is unknown."""
        marks = [f.watermark for f in self.freshness.values()]
        if not marks or any(m is None for m in marks):
            return None
        return min(m for m in marks if m is not None)

    @property
    def lag_ms(self) -> float | None:
        """The largest lag of the queried sources; None when one is unknown."""
        lags = [f.lag_ms for f in self.freshness.values()]
        if not lags or any(x is None for x in lags):
            return None
        return max(x for x in lags if x is not None)
