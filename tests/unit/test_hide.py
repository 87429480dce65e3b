"""freshrag.hide: a hidden package is "not installed" for the process, availability probes still
answer without raising, and the optional users the watcher relies on (pyarrow, LanceDB) take
their no-package path; in a fresh interpreter, since this one may have imported pandas."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def test_a_hidden_pandas_is_not_installed_and_lancedb_writes_and_searches(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from freshrag.hide import hide
        assert hide("pandas")
        try:
            import pandas
        except ImportError:
            pass
        else:
            raise SystemExit("pandas imported")
        # availability probes do not raise (torch's dynamo asks find_spec for pandas) and
        # point at no file
        import importlib.util
        assert importlib.util.find_spec("pandas").origin is None
        import lancedb, pyarrow as pa
        db = lancedb.connect({str(tmp_path)!r})
        t = db.create_table("t", pa.table({{"id": ["a", "b"], "vector": [[1.0, 0.0], [0.0, 1.0]]}}))
        t.add([{{"id": "c", "vector": [1.0, 1.0]}}])
        hits = t.search([1.0, 0.1]).limit(1).to_arrow()
        assert hits["id"].to_pylist() == ["a"], hits
        assert "pandas" not in sys.modules
        print("ok")
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_hiding_what_is_already_imported_does_nothing() -> None:
    from freshrag.hide import hide

    assert hide("json") is False
    import json  # noqa: F401  (still importable)
