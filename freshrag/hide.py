"""Keep optional packages a long-running process never uses out of it (imports cost memory)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType


class _Hidden(MetaPathFinder):
    """Finds the hidden packages as a spec without a loader: `import` then fails with an
    ImportError, `importlib.util.find_spec` answers a spec with no origin (no exception for
    its callers), and the optional users here (pyarrow's pandas shim, LanceDB's lazy imports,
    which check the loader) take their no-package path."""

    def __init__(self, names: frozenset[str]):
        self.names = names

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname.partition(".")[0] in self.names:
            return ModuleSpec(fullname, None)
        return None


def hide(*names: str) -> bool:
    """Make `names` unimportable in this process from now on; False (and nothing hidden) when
    one of them is already imported."""
    if any(n in sys.modules for n in names):
        return False
    if not any(isinstance(f, _Hidden) and f.names == frozenset(names) for f in sys.meta_path):
        sys.meta_path.insert(0, _Hidden(frozenset(names)))
    return True
