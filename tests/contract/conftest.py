"""Index backends for the contract suite: embedded LanceDB, Weaviate on the fake, real Weaviate."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from freshrag.index import Index
from freshrag.index.lancedb import LanceIndex
from freshrag.index.weaviate import WeaviateIndex
from tests.fakes.weaviate_fake import FakeWeaviate, Limits

# The fake runs with a small QUERY_MAXIMUM_RESULTS (the adapter told the same), so the contract's
# large document (1,150 chunks) is read past the server's limit, as on a tightly set server.
FAKE_MAXIMUM = 500


@dataclass
class Backend:
    """Opens indexes over one storage (one folder, one collection): reopen = same data."""

    name: str
    make: Callable[[int | None], Index]
    opened: list[Index] = field(default_factory=list)
    fake: FakeWeaviate | None = None

    def open(self, dim: int | None = None) -> Index:
        index = self.make(dim)
        self.opened.append(index)
        return index


@pytest.fixture(scope="session")
def weaviate_fake() -> Iterator[FakeWeaviate]:
    fake = FakeWeaviate(Limits(query_maximum_results=FAKE_MAXIMUM)).start()
    yield fake
    fake.stop()


def _real_weaviate(collection: str) -> Callable[[int | None], Index]:
    url = os.environ["WEAVIATE_URL"]
    return lambda dim: WeaviateIndex(
        url, dim=dim, collection=collection, api_key=os.environ.get("WEAVIATE_API_KEY", ""),
        grpc_port=int(os.environ.get("WEAVIATE_GRPC_PORT", "50051")),
        query_maximum_results=int(os.environ.get("WEAVIATE_QUERY_MAXIMUM_RESULTS", "10000")))


def _drop(index: Index, collection: str) -> None:
    assert isinstance(index, WeaviateIndex)
    index._col()  # connected
    index._client.collections.delete(collection)


@pytest.fixture(params=["lancedb", "weaviate-fake", "weaviate"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    collection = f"Contract{uuid.uuid4().hex[:12]}"
    if request.param == "lancedb":
        b = Backend("lancedb", lambda dim: LanceIndex(tmp_path / "index", dim=dim))
    elif request.param == "weaviate-fake":
        fake = request.getfixturevalue("weaviate_fake")
        b = Backend("weaviate-fake", lambda dim: WeaviateIndex(
            fake.url, dim=dim, collection=collection, grpc_port=fake.grpc_port, timeout_s=5,
            query_maximum_results=FAKE_MAXIMUM), fake=fake)
    else:
        if not os.environ.get("WEAVIATE_URL"):
            pytest.skip("real Weaviate: set WEAVIATE_URL (and WEAVIATE_GRPC_PORT, "
                        "WEAVIATE_API_KEY, WEAVIATE_QUERY_MAXIMUM_RESULTS if needed) to run "
                        "the contract against it")
        b = Backend("weaviate", _real_weaviate(collection))
    yield b
    if request.param == "weaviate" and b.opened:
        _drop(b.opened[0], collection)
    for index in b.opened:
        index.close()
    if b.fake is not None:
        with b.fake.store.lock:
            b.fake.store.collections.pop(collection, None)
