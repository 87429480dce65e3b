"""A reader process that opens the embedded index before the writer built its full-text index."""

from __future__ import annotations

from pathlib import Path

import lancedb

from freshrag.index.lancedb import LanceIndex
from freshrag.model import Mode


def test_keyword_search_before_the_full_text_index_exists_is_empty_not_an_error(
        tmp_path: Path) -> None:
    index = LanceIndex(tmp_path, dim=4)
    # What a writer in another process leaves between create_table and create_fts_index.
    lancedb.connect(str(tmp_path)).create_table(index.table_name, schema=index._schema(4))
    reader = LanceIndex(tmp_path, dim=4)
    assert reader.search("anything", None, 5, Mode.keyword) == []
    assert reader.search("anything", [1.0, 0, 0, 0], 5, Mode.hybrid) == []
