"""Model-based: random file operations, a sync after each, and the index must equal what a
from-scratch sync of the same folder into a fresh home produces."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from freshrag.engine import Engine
from freshrag.model import Mode
from freshrag.parse import UnstructuredParser
from tests.conftest import folder_settings
from tests.corpus import paragraph
from tests.sql.conftest import FakeEmbedder

NAMES = ["a.md", "b.md", "c.txt", "d/e.md", "d/f.txt", "d/g/h.md", "i.md"]
FOLDERS = ["d", "d/g", "x", "x/y"]
PARAS = [paragraph(random.Random(i), 40) for i in range(12)]
names = st.sampled_from(NAMES)


def snapshot(engine: Engine) -> dict[str, list[tuple[str, str]]]:
    """doc key -> sorted (chunk hash, text) of what the index holds."""
    return {key: sorted((h.chunk_hash, h.text) for h in engine.index.get_document("docs", key))
            for key in engine.index.documents("docs")}


class FolderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="freshrag-model-"))
        self.root = self.tmp / "docs"
        self.root.mkdir()
        self.engine = self.make(self.tmp / "home")
        self.clock = 1_700_000_000 * 10**9
        self.fresh = 0

    def make(self, home: Path) -> Engine:
        return Engine(folder_settings(home, self.root), embedder=FakeEmbedder(),
                      parser=UnstructuredParser())

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def stamp(self, path: Path) -> None:
        """A distinct mtime per write: a same-size rewrite within the filesystem's timestamp
        granularity is invisible to a stat scan (README: Reliability)."""
        self.clock += 10**9
        os.utime(path, ns=(self.clock, self.clock))

    def pick(self, data: st.DataObject) -> Path | None:
        files = self.files()
        return data.draw(st.sampled_from(files)) if files else None

    @rule(name=names, paras=st.lists(st.integers(0, len(PARAS) - 1), min_size=1, max_size=4))
    def write(self, name: str, paras: list[int]) -> None:
        path = self.root / name
        if path.parent.exists() and not path.parent.is_dir():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        title = f"# {path.stem}\n\n"
        path.write_text(title + "\n\n".join(PARAS[i] for i in paras) + "\n")
        self.stamp(path)

    @rule(data=st.data(), para=st.integers(0, len(PARAS) - 1))
    def append(self, data: st.DataObject, para: int) -> None:
        path = self.pick(data)
        if path is not None:
            with path.open("a") as fh:
                fh.write("\n" + PARAS[para] + "\n")
            self.stamp(path)

    @rule(data=st.data(), name=names)
    def rename(self, data: st.DataObject, name: str) -> None:
        path, target = self.pick(data), self.root / name
        if path is not None and not target.exists() and not target.parent.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)

    @rule(src=st.sampled_from(FOLDERS), dst=st.sampled_from(FOLDERS))
    def move_folder(self, src: str, dst: str) -> None:
        a, b = self.root / src, self.root / dst
        if a.is_dir() and not b.exists() and not str(b).startswith(str(a) + "/"):
            b.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(a), str(b))

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        path = self.pick(data)
        if path is not None:
            path.unlink()

    @rule(data=st.data())
    def touch(self, data: st.DataObject) -> None:
        path = self.pick(data)
        if path is not None:
            self.stamp(path)

    @rule(data=st.data(), name=names)
    def copy(self, data: st.DataObject, name: str) -> None:
        path, target = self.pick(data), self.root / name
        if path is not None and not target.exists() and not target.parent.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
            self.stamp(target)

    @invariant()
    def index_equals_a_fresh_sync(self) -> None:
        report = self.engine.sync("docs")
        assert report.failed == 0, report.errors
        self.fresh += 1
        fresh = self.make(self.tmp / f"fresh{self.fresh}")
        try:
            fresh.sync("docs")
            assert snapshot(self.engine) == snapshot(fresh)
        finally:
            fresh.close()
            shutil.rmtree(self.tmp / f"fresh{self.fresh}")

    def teardown(self) -> None:
        self.engine.close()
        shutil.rmtree(self.tmp)


FolderMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("FRESHRAG_MODEL_EXAMPLES", "25")), stateful_step_count=10,
    deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
TestFolderModel = pytest.mark.slow(FolderMachine.TestCase)


class AnnFolderMachine(FolderMachine):
    """The same, with the embedded index's ANN on from 4 chunks: every sync folds its writes
    into (or retrains, or drops) a vector index, and vector search over it must return exactly
    what the fresh home's returns — no deleted or replaced chunk left behind."""

    def make(self, home: Path) -> Engine:
        engine = super().make(home)
        engine.settings.index.ann_min_rows = 2
        return engine

    @invariant()
    def vector_search_equals_a_fresh_sync(self) -> None:
        self.engine.sync("docs")
        fresh = self.make(self.tmp / "fresh-ann")
        try:
            fresh.sync("docs")
            for query in PARAS[:3]:
                got = {(h.doc_key, h.chunk_hash) for h in
                       self.engine.search(query, 200, Mode.vector)}
                want = {(h.doc_key, h.chunk_hash) for h in fresh.search(query, 200, Mode.vector)}
                assert got == want
        finally:
            fresh.close()
            shutil.rmtree(self.tmp / "fresh-ann")


AnnFolderMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("FRESHRAG_MODEL_EXAMPLES", "4")), stateful_step_count=8,
    deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
TestAnnFolderModel = pytest.mark.slow(AnnFolderMachine.TestCase)
