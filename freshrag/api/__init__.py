"""The HTTP retrieval API (`freshrag serve`): search with freshness you can see and rely on."""

from freshrag.api.app import create_app

__all__ = ["create_app"]
