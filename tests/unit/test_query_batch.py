"""The API's query batcher: concurrent queries share one model call, each gets its own vector,
and a model failure reaches every request of its batch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from freshrag.api.batch import QueryBatcher
from freshrag.embed import EmbedError


class Model:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = threading.Event()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.gate.wait(5)  # the first call holds until the rest have queued
        self.calls.append(list(texts))
        if "boom" in texts:
            raise EmbedError("model gone")
        return [[float(len(t)), float(sum(map(ord, t)))] for t in texts]


def test_concurrent_queries_are_embedded_together_each_with_its_own_vector() -> None:
    model = Model()
    batcher = QueryBatcher(model.embed)
    queries = ["a", "bb", "ccc", "bb", "dddd"]

    async def main() -> list[list[float]]:
        first = asyncio.ensure_future(batcher.embed("zero"))
        await asyncio.sleep(0.05)  # the first batch is at the model
        rest = [asyncio.ensure_future(batcher.embed(q)) for q in queries]
        await asyncio.sleep(0.05)
        model.gate.set()
        return [await first, *[await r for r in rest]]

    got = asyncio.run(main())
    assert model.calls == [["zero"], ["a", "bb", "ccc", "dddd"]]  # duplicates embedded once
    assert got == model.embed(["zero", *queries])


def test_a_model_failure_reaches_every_request_of_its_batch_only() -> None:
    model = Model()
    model.gate.set()
    batcher = QueryBatcher(model.embed)

    async def main() -> None:
        both = [batcher.embed("boom"), batcher.embed("fine")]
        for outcome in await asyncio.gather(*both, return_exceptions=True):
            assert isinstance(outcome, EmbedError)
        assert await batcher.embed("after") == [5.0, float(sum(map(ord, "after")))]

    asyncio.run(main())
    assert model.calls[-1] == ["after"]


@pytest.mark.parametrize("n", [70])
def test_a_burst_larger_than_a_batch_is_split(n: int) -> None:
    model = Model()
    model.gate.set()
    batcher = QueryBatcher(model.embed, max_batch=32)

    async def main() -> list[list[float]]:
        return await asyncio.gather(*(batcher.embed(f"q{i}") for i in range(n)))

    got = asyncio.run(main())
    assert [len(c) for c in model.calls] == [32, 32, 6]
    assert got == model.embed([f"q{i}" for i in range(n)])
