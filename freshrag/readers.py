"""Readers in the data path: what a permission change re-writes, and when a source's are
captured differently."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from freshrag.config import Settings
from freshrag.model import EVERYONE, Item, SyncReport, content_hash

log = logging.getLogger("freshrag.engine")

READERS_SIG = "; readers "  # joins the chunking part of a pipeline signature to the readers'


def meta_hash_of(metadata: dict[str, Any], readers: Sequence[str] = (EVERYONE,)) -> str:
    """What a metadata write covers: the metadata and, unless everyone may read, the readers
    (so a permission change is a metadata change, and `none` sources hash as they always did)."""
    if list(readers) != [EVERYONE]:
        return content_hash(repr((sorted(metadata.items()), sorted(readers))))
    return content_hash(repr(sorted(metadata.items()))) if metadata else ""


def chunking_of(signature: str | None) -> str | None:
    """The part of a pipeline signature the chunks depend on (not how readers are captured)."""
    return signature.split(READERS_SIG, 1)[0] if signature is not None else None


def permissions_of(settings: Settings, source: str) -> str:
    """A source's `permissions` setting ("none" unless it says otherwise)."""
    for src in settings.sources:
        if src.name == source:
            return str(src.options().get("permissions") or "none")
    return "none"


def read_reporting(src: Any, key: str, report: SyncReport) -> Item:
    """The read stage: one item, and a report line when its readers could not be determined
    (it is indexed all the same, readable by admins only)."""
    item: Item = src.read(key)
    if item.readers_error is not None:
        log.warning("%s: %s: readers unknown, nobody may read it: %s", src.name, key,
                    item.readers_error)
        report.close(src.name, key, item.readers_error)
    return item
