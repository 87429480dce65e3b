"""Give the heap a long-running process freed back to the system, once it goes idle (glibc)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from typing import Any

_libc: list[Any] = []


def _malloc_trim() -> Any:
    if not _libc:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.append(libc.malloc_trim)
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
            _libc.append(None)
    return _libc[0]


def trim() -> None:
    """Collect cycles, then return the free pages of every malloc arena to the system.
    glibc keeps what a burst freed (a parse's or a batch's temporaries) in its arenas,
    counted in the process's RSS until reused; malloc_trim(0) releases it (milliseconds)."""
    gc.collect()
    fn = _malloc_trim()
    if fn is not None:
        fn(0)
