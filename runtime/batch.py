"""Micro-batching: callers hand in one item each and await its own result; the items that
arrive while one batch is being processed form the next. At idle a batch is one item and
adds no delay; under load batches grow by themselves, up to `max_size`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        process: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_size: int,
        linger: float = 0.0,
    ) -> None:
        """`linger`: seconds a batch waits for more items before it is processed (none: it
        takes those that came in the same turn of the loop)."""
        self._process = process
        self._max = max(1, max_size)
        self._linger = linger
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # processed so far, and the items in them
        self.items = 0

    async def submit(self, item: T) -> R:
        """Process `item` in the next batch; return its result or raise the batch's error."""
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        # One turn of the loop first: callers woken by the same event join this batch.
        await asyncio.sleep(self._linger)
        while self._pending:
            batch, self._pending = self._pending[: self._max], self._pending[self._max :]
            self.batches += 1
            self.items += len(batch)
            try:
                results = await self._process([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, fut in batch:
                    fut.cancel()
                for _, fut in self._pending:
                    fut.cancel()
                self._pending = []
                raise
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            if len(results) != len(batch):
                error = RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(error)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():  # a caller that gave up (cancelled) has no one to tell
                    fut.set_result(result)

    @property
    def mean_size(self) -> float:
        return round(self.items / self.batches, 1) if self.batches else 0.0
