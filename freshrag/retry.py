"""Retry with exponential backoff for calls to services that may be briefly unavailable."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("freshrag.retry")


def retry(fn: Callable[[], T], errors: tuple[type[BaseException], ...], what: str,
          attempts: int = 4, first_delay: float = 0.5, sleep: Callable[[float], None] = time.sleep
          ) -> T:
    """Call `fn`; on one of `errors` wait 0.5 s, 1 s, 2 s ... and try again; re-raise the last."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except errors as exc:
            if attempt == attempts:
                raise
            log.warning("%s failed (attempt %d of %d): %s; retrying in %.1f s",
                        what, attempt, attempts, exc, delay)
            sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
