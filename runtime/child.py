"""One child process (spawned) for work on hostile input that may hang in a C call or take
all memory: step templates (scheduler/planning.py) and inbound mail (inbox/reading.py). The
event loop stays free; a call that passes its time is answered by killing the child, and the
next call starts a new one."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import multiprocessing
import resource
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def limit_memory(extra_bytes: int) -> None:
    """Cap this (child) process's address space at what it maps now plus `extra_bytes`."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[0])
        limit = pages * resource.getpagesize() + extra_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (OSError, ValueError):  # pragma: no cover - not Linux
        pass


def _ready() -> bool:
    return True


class Child:
    """A single-worker process pool that can be killed and started again."""

    def __init__(self, initializer: Callable[[], None]) -> None:
        self._initializer = initializer
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._registered = False

    def executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._executor is None:
            if not self._registered:
                atexit.register(self.kill)
                self._registered = True
            self._executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=self._initializer,
            )
        return self._executor

    async def start(self) -> None:
        """Start the child now rather than at the first call (it takes a moment)."""
        await asyncio.get_running_loop().run_in_executor(self.executor(), _ready)

    def kill(self) -> None:
        """End the child, busy or not; the next call starts a new one."""
        pool, self._executor = self._executor, None
        if pool is None:
            return
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    async def call(self, within: float, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the child; TimeoutError after `within` seconds (or BrokenExecutor
        when the child died), the child killed either way."""
        fut = asyncio.get_running_loop().run_in_executor(self.executor(), fn, *args)
        try:
            return await asyncio.wait_for(fut, within)
        except (TimeoutError, concurrent.futures.BrokenExecutor):
            self.kill()
            raise
