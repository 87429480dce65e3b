"""The Source Protocol and the registry that builds a source from its config table."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from freshrag.model import Candidate, Fingerprint, Item


class SourceError(Exception):
    """An item cannot be read; the message says why. The sync records it and goes on."""


class Source(Protocol):
    """A named place documents come from: a folder, a table."""

    name: str

    def scan(self, known: Mapping[str, Fingerprint]) -> Iterator[Candidate]:
        """Yield the items that may have changed since `known` (key -> fingerprint),
        including items in `known` that no longer exist (fingerprint None)."""

    def candidates(self, keys: list[str]) -> Iterator[Candidate]:
        """Fingerprint exactly these keys (a watcher's batch); absent keys get None."""

    def read(self, key: str) -> Item:
        """Read one item's bytes; raises SourceError with the reason."""

    def commit(self) -> None:
        """Called after the index write covering the last scan succeeded (cursors advance here)."""


SourceFactory = Callable[[dict[str, Any], "Any"], Source]
_REGISTRY: dict[str, str] = {
    "folder": "connectors.folder:FolderSource",
    "sql": "connectors.sql:SqlSource",
}


# Each type's own keys, validated when the config is loaded (by every command): a pydantic
# model, or a function that validates the config entry.
_OPTIONS: dict[str, str] = {
    "folder": "connectors.folder:FolderOptions",
    "sql": "connectors.sql_options:parse_options",
}


def register(type_name: str, target: str, options: str | None = None) -> None:
    """Register a source type as 'module:Class' (and its options, 'module:Model' or
    'module:function')."""
    _REGISTRY[type_name] = target
    if options is not None:
        _OPTIONS[type_name] = options


def check_options(config: Any) -> None:
    """Validate a `[[sources]]` entry's own keys without building the source (no I/O);
    raises ConfigError naming the key."""
    import importlib

    target = _OPTIONS.get(config.type)
    if target is not None:
        module_name, attr = target.split(":")
        check = getattr(importlib.import_module(module_name), attr)
        if isinstance(check, type):
            config.parse_options(check)
        else:
            check(config)


def source_types() -> list[str]:
    return sorted(_REGISTRY)


def build_source(config: Any, home: Any) -> Source:
    """Build the Source for one `[[sources]]` config entry (imports the connector lazily)."""
    import importlib

    target = _REGISTRY[config.type]
    module_name, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    source: Source = cls(config, home)
    return source
