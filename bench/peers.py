"""The same edits through LlamaIndex's IngestionPipeline and LangChain's index(), counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.reembed import Scenario

CHUNK_SIZE = 256  # tokens (LlamaIndex) / about the same in characters x4 (LangChain)


class Counter:
    def __init__(self) -> None:
        self.texts = 0


def llamaindex(scenario: Scenario, tmp: Path) -> dict[str, int]:
    from llama_index.core import Document
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.storage.docstore import SimpleDocumentStore
    from llama_index.core.vector_stores import SimpleVectorStore

    counter = Counter()

    class Counting(MockEmbedding):
        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            counter.texts += len(texts)
            return super()._get_text_embeddings(texts)

    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=20),
                         Counting(embed_dim=8)],
        docstore=SimpleDocumentStore(), vector_store=SimpleVectorStore(),
        docstore_strategy=DocstoreStrategy.UPSERTS)

    def run() -> int:
        before = counter.texts
        docs = [Document(text=text, id_=name) for name, text in scenario.files().items()]
        pipeline.run(documents=docs)
        return counter.texts - before

    run()
    return {case: (apply(), run())[1] for case, apply in scenario.steps()}


def langchain(scenario: Scenario, tmp: Path) -> dict[str, int]:
    from langchain_classic.indexes import SQLRecordManager, index
    from langchain_core.documents import Document
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    counter = Counter()

    class Counting(DeterministicFakeEmbedding):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            counter.texts += len(texts)
            return super().embed_documents(texts)

    store = InMemoryVectorStore(Counting(size=8))
    manager = SQLRecordManager("bench", db_url=f"sqlite:///{tmp / 'records.db'}")
    manager.create_schema()
    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE * 4, chunk_overlap=100)

    def run() -> int:
        before = counter.texts
        docs = [Document(page_content=text, metadata={"source": name})
                for name, text in scenario.files().items()]
        index(splitter.split_documents(docs), manager, store, cleanup="full",
              source_id_key="source")
        return counter.texts - before

    run()
    return {case: (apply(), run())[1] for case, apply in scenario.steps()}


def run_all() -> dict[str, Any]:
    from bench.reembed import peer_counts

    out: dict[str, Any] = {}
    for name, fn in (("llamaindex", llamaindex), ("langchain", langchain)):
        try:
            out[name] = peer_counts(fn)
        except ImportError as exc:
            out[name] = {"error": f"not installed ({exc.name}): pip install -e '.[bench]'"}
    return out
