"""Micro-batching: concurrent requests share one model forward.

A request submits its item and awaits the result. A worker gathers items until it has
``max_batch`` of them or the first one has waited ``max_wait_ms``, runs the batch function
once on an executor thread (never on the event loop) and hands each caller its own result.
While a batch runs, new items queue up, so under load batches fill without any waiting.

With batching switched off every item runs alone on the same executor, so the two modes
differ only in grouping and can be compared like for like.

Items whose caller has gone (deadline exceeded, client cancelled) are dropped before the
batch runs, so expired work costs nothing.

A batch waits for partners only while partners can come: given ``partners`` (how many
callers could submit at all, e.g. the requests in flight), the worker stops gathering once
the batch holds that many. A lone request therefore never waits ``max_wait_ms`` for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


@dataclass
class BatchStats:
    """Counters for benchmarks and logs: how full the batches were."""

    batches: int = 0
    items: int = 0
    dropped: int = 0
    max_size: int = 0
    sizes: dict[int, int] = field(default_factory=dict)

    def record(self, n: int) -> None:
        self.batches += 1
        self.items += n
        self.max_size = max(self.max_size, n)
        self.sizes[n] = self.sizes.get(n, 0) + 1

    @property
    def mean_size(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class MicroBatcher(Generic[T, R]):
    """Batches calls of ``fn(items) -> results`` (same length, same order)."""

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        executor: Executor,
        *,
        enabled: bool,
        max_batch: int = 16,
        max_wait_ms: float = 2.0,
        name: str = "batch",
        partners: Callable[[], int] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.fn = fn
        self.executor = executor
        self.enabled = enabled and max_batch > 1
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.name = name
        self.partners = partners
        self.stats = BatchStats()
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if not self.enabled:
            self.stats.record(1)
            (result,) = await loop.run_in_executor(self.executor, self._run_checked, [item])
            return result
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._work(), name=f"batcher-{self.name}")
        fut: asyncio.Future[R] = loop.create_future()
        assert self._queue is not None
        self._queue.put_nowait((item, fut))
        return await fut

    def _run_checked(self, items: list[T]) -> list[R]:
        results = list(self.fn(items))
        if len(results) != len(items):
            raise RuntimeError(f"{self.name}: batch function returned {len(results)} results for {len(items)} items")
        return results

    async def _gather(self) -> list[tuple[T, asyncio.Future[R]]]:
        assert self._queue is not None
        first = await self._queue.get()
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            try:  # everything already queued joins without waiting
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            if self.partners is not None and len(batch) >= self.partners():
                break  # everyone who could join has joined
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            live = [(item, fut) for item, fut in batch if not fut.done()]
            self.stats.dropped += len(batch) - len(live)
            if not live:
                continue
            self.stats.record(len(live))
            try:
                results = await loop.run_in_executor(self.executor, self._run_checked, [i for i, _ in live])
            except asyncio.CancelledError:
                for _, fut in live:
                    if not fut.done():
                        fut.cancel()
                raise
            except BaseException as exc:  # every caller of the batch gets the failure
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), res in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(res)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None


class KeyedBatcher(Generic[T, R]):
    """One :class:`MicroBatcher` per key: only items with the same key can share a forward
    (e.g. the same edit ``{color: blue}`` through the same generator)."""

    def __init__(
        self,
        make_fn: Callable[[Hashable], Callable[[list[T]], Sequence[R]]],
        executor: Executor,
        *,
        enabled: bool,
        max_batch: int = 16,
        max_wait_ms: float = 2.0,
        name: str = "batch",
        partners: Callable[[], int] | None = None,
    ) -> None:
        self.make_fn = make_fn
        self.executor = executor
        self.kwargs = dict(enabled=enabled, max_batch=max_batch, max_wait_ms=max_wait_ms, partners=partners)
        self.name = name
        self._batchers: dict[Hashable, MicroBatcher[T, R]] = {}

    async def submit(self, key: Hashable, item: T) -> R:
        b = self._batchers.get(key)
        if b is None:
            b = MicroBatcher(self.make_fn(key), self.executor, name=f"{self.name}[{key}]", **self.kwargs)
            self._batchers[key] = b
        return await b.submit(item)

    @property
    def stats(self) -> BatchStats:
        total = BatchStats()
        for b in self._batchers.values():
            s = b.stats
            total.batches += s.batches
            total.items += s.items
            total.dropped += s.dropped
            total.max_size = max(total.max_size, s.max_size)
            for k, v in s.sizes.items():
                total.sizes[k] = total.sizes.get(k, 0) + v
        return total

    async def close(self) -> None:
        for b in self._batchers.values():
            await b.close()
