"""Query embedding for the API: concurrent requests' queries embedded together, one model call
per batch on one thread (many threads each calling the model oversubscribe the cores)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import anyio

MAX_BATCH = 32


class QueryBatcher:
    """`await embed(text)`: queued with the other requests' queries; while the model embeds
    one batch, the next one gathers. A failure reaches every request of its batch."""

    def __init__(self, embed: Callable[[Sequence[str]], list[list[float]]],
                 max_batch: int = MAX_BATCH):
        self._embed = embed
        self._max = max_batch
        self._pending: list[tuple[str, asyncio.Future[list[float]]]] = []
        self._draining = False
        self.batches = 0  # model calls made (the tests count them)

    @property
    def waiting(self) -> int:
        """Queries queued for the next batch."""
        return len(self._pending)

    async def embed(self, text: str) -> list[float]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[float]] = loop.create_future()
        self._pending.append((text, future))
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:self._max], self._pending[self._max:]
                texts = list(dict.fromkeys(text for text, _ in batch))
                try:
                    vectors = await anyio.to_thread.run_sync(self._embed, texts)
                    self.batches += 1
                except Exception as exc:  # each request reports it (503 for the model)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                by_text = dict(zip(texts, vectors, strict=True))
                for text, future in batch:
                    if not future.done():
                        future.set_result(by_text[text])
        finally:
            self._draining = False
