"""Prefect orchestration over the freshrag engine: the sync flow and the watcher service."""
