"""What every integration shares: the search options and the metadata a hit carries."""

from __future__ import annotations

from typing import Any

from freshrag.client.models import Hit, SearchResult

# The options of a search an integration passes through, by the client's names.
SEARCH_OPTIONS = ("k", "mode", "alpha", "source", "filters", "max_lag_ms", "min_watermark")


def hit_metadata(hit: Hit, result: SearchResult) -> dict[str, Any]:
    """A hit's citation and freshness: where it is from, when it changed and was indexed, and
    the response's watermark (every change before it is in these results)."""
    return {
        "source": hit.source, "doc_key": hit.doc_key, "location": hit.location,
        "title": hit.title, "page": hit.page, "score": hit.score,
        "source_modified_at": hit.source_modified_at, "indexed_at": hit.indexed_at,
        "watermark": result.watermark, "lag_ms": result.lag_ms, "fields": dict(hit.metadata),
    }


def options(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The retriever's fields, overridden per call (`invoke(q, k=1)`); an unknown name is a
    TypeError naming it and what is accepted."""
    unknown = sorted(set(overrides) - set(SEARCH_OPTIONS))
    if unknown:
        raise TypeError(f"unknown search option(s) {', '.join(unknown)} "
                        f"(accepted: {', '.join(SEARCH_OPTIONS)})")
    return {**defaults, **overrides}
