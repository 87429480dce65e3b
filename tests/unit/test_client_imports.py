"""`import freshrag.client` stays light: no model, index, orchestration or web framework."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "sentence_transformers", "lancedb", "prefect", "fastapi", "starlette",
         "unstructured", "weaviate", "freshrag.engine")


def test_the_client_imports_without_heavy_libraries() -> None:
    code = ("import sys, freshrag.client, freshrag.client.testing; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"freshrag.client imported {done.stdout.strip()}"
