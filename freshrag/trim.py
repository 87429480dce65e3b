"""Give the heap a long-running process freed back to the system, once it goes idle (glibc)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
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


def arrow_uses_malloc() -> None:
    """Arrow allocates from malloc instead of its bundled mimalloc in this process (unless the
    user chose a pool with ARROW_DEFAULT_MEMORY_POOL). mimalloc keeps the pages a burst of
    index writes freed (~55 MB of a watcher after 1000 files, with 0 bytes still allocated);
    malloc gives them back at trim(). Inherited by child processes."""
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return
    os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"
    if "pyarrow" in sys.modules:  # imported already: its default pool is chosen; switch it
        import pyarrow

        pyarrow.set_memory_pool(pyarrow.system_memory_pool())
