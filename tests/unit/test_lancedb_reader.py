"""A reader process that opens the embedded index before the writer built its full-text index."""

from __future__ import annotations

from pathlib import Path

import lancedb

from freshrag.index.lancedb import LanceIndex
from freshrag.model import Mode, Record


def test_keyword_search_before_the_full_text_index_exists_is_empty_not_an_error(
        tmp_path: Path) -> None:
    index = LanceIndex(tmp_path, dim=4)
    # What a writer in another process leaves between create_table and create_fts_index.
    lancedb.connect(str(tmp_path)).create_table(index.table_name, schema=index._schema(4))
    reader = LanceIndex(tmp_path, dim=4)
    assert reader.search("anything", None, 5, Mode.keyword) == []
    assert reader.search("anything", [1.0, 0, 0, 0], 5, Mode.hybrid) == []


def test_a_table_folder_left_without_a_first_version_is_no_table_until_written(
        tmp_path: Path) -> None:
    # What a process killed inside create_table leaves (CI caught a sync killed there).
    (tmp_path / "chunks.lance" / "_versions").mkdir(parents=True)
    (tmp_path / "chunks.lance" / "data").mkdir()
    index = LanceIndex(tmp_path, dim=4)
    assert index.search("anything", [1.0, 0, 0, 0], 5, Mode.hybrid) == []
    index.refresh()
    index.upsert([Record(id="c1", vector=[1.0, 0, 0, 0], text="the albatross ledger",
                         source="docs", doc_key="a.md", chunk_hash="h", ordinal=0, title="a",
                         location="a.md", page=None, source_modified_at=0.0, indexed_at=0.0)])
    again = LanceIndex(tmp_path, dim=4)
    assert [h.id for h in again.search("albatross", [1.0, 0, 0, 0], 5, Mode.hybrid)] == ["c1"]
