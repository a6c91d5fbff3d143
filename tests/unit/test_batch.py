"""MicroBatcher: each caller gets its own result; batches form from what arrives together."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.batch import MicroBatcher


async def test_callers_arriving_together_share_a_batch_and_get_their_own_results() -> None:
    seen: list[list[int]] = []

    async def square(items: list[int]) -> list[int]:
        seen.append(items)
        await asyncio.sleep(0.01)
        return [i * i for i in items]

    b = MicroBatcher(square, max_size=4)
    results = await asyncio.gather(*(b.submit(i) for i in range(10)))
    assert results == [i * i for i in range(10)]
    assert [len(x) for x in seen] == [4, 4, 2]  # capped at max_size, nothing lost
    assert b.batches == 3
    assert b.mean_size == pytest.approx(10 / 3, abs=0.05)


async def test_a_lone_caller_is_not_kept_waiting() -> None:
    async def echo(items: list[str]) -> list[str]:
        return items

    b = MicroBatcher(echo, max_size=64)
    assert await asyncio.wait_for(b.submit("x"), 0.5) == "x"
    assert b.batches == 1


async def test_arrivals_during_a_batch_form_the_next_one() -> None:
    seen: list[list[int]] = []
    gate = asyncio.Event()

    async def slow(items: list[int]) -> list[int]:
        seen.append(items)
        if len(seen) == 1:
            await gate.wait()
        return items

    b = MicroBatcher(slow, max_size=100)
    first = asyncio.create_task(b.submit(0))
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(b.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0.01)
    gate.set()
    assert await first == 0
    assert await asyncio.gather(*later) == [1, 2, 3, 4, 5]
    assert seen == [[0], [1, 2, 3, 4, 5]]


async def test_an_error_fails_its_batch_only() -> None:
    calls = 0

    async def flaky(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database away")
        return items

    b = MicroBatcher(flaky, max_size=2)
    outcomes = await asyncio.gather(*(b.submit(i) for i in range(4)), return_exceptions=True)
    assert isinstance(outcomes[0], ConnectionError)
    assert isinstance(outcomes[1], ConnectionError)
    assert outcomes[2:] == [2, 3]


async def test_a_wrong_number_of_results_is_an_error_not_a_mismatch() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    b = MicroBatcher(short, max_size=8)
    outcomes = await asyncio.gather(*(b.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)


async def test_a_caller_that_gives_up_does_not_break_the_others() -> None:
    gate = asyncio.Event()

    async def slow(items: list[int]) -> list[int]:
        await gate.wait()
        return items

    b = MicroBatcher(slow, max_size=8)
    quitter = asyncio.create_task(b.submit(1))
    stayer = asyncio.create_task(b.submit(2))
    await asyncio.sleep(0.01)
    quitter.cancel()
    gate.set()
    assert await stayer == 2
    with pytest.raises(asyncio.CancelledError):
        await quitter


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 60), size=st.integers(1, 16))
def test_every_item_is_processed_once_in_order(n: int, size: int) -> None:
    async def run() -> tuple[list[int], list[list[int]]]:
        seen: list[list[int]] = []

        async def ident(items: list[int]) -> list[int]:
            seen.append(items)
            await asyncio.sleep(0)
            return items

        b = MicroBatcher(ident, max_size=size)
        return await asyncio.gather(*(b.submit(i) for i in range(n))), seen

    results, seen = asyncio.run(run())
    assert results == list(range(n))
    assert [i for batch in seen for i in batch] == list(range(n))
    assert all(1 <= len(batch) <= size for batch in seen)
