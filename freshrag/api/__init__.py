"""The HTTP retrieval API (`freshrag serve`): search with freshness you can see and rely on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from freshrag.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so `freshrag.api.schemas` (the client's models) imports without FastAPI and the
    # engine behind the app.
    if name == "create_app":
        from freshrag.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
