"""freshrag.trim.arrow_uses_malloc: Arrow's default pool becomes the system allocator (before or
after pyarrow's import), unless the user chose one; in fresh interpreters (the pool is chosen
once per process)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

IMPORT_FIRST = "import pyarrow\n"
CALL = "from freshrag.trim import arrow_uses_malloc, trim\narrow_uses_malloc()\n"
CHECK = ("import pyarrow as pa\npa.array(list(range(1000)))\ntrim()\n"
         "print(pa.default_memory_pool().backend_name)\n")


def _backend(code: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.parametrize("imported_first", [False, True],
                         ids=["called-before-import", "called-after-import"])
def test_the_pool_becomes_malloc(imported_first: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    assert _backend(CHECK.replace("trim()\n", ""), env) != "system"  # what Arrow picks itself
    assert _backend((IMPORT_FIRST if imported_first else "") + CALL + CHECK, env) == "system"


def test_a_pool_the_user_chose_is_kept() -> None:
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}
    assert _backend(CALL + CHECK, env) == "mimalloc"
