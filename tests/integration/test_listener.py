"""The LISTEN connection (db/pool.py `Listener`) against a real PostgreSQL: a connection the
server drops is reopened, and notifications arrive on the new one; stop ends it at once."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from db.pool import Listener


async def test_a_dropped_listen_connection_is_reopened(pool: asyncpg.Pool, database: str) -> None:
    listener = Listener(database, ["es_test_channel"])
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    try:
        await asyncio.wait_for(listener.event.wait(), 10)  # set once listening

        async def listening_pids() -> list[int]:
            rows = await pool.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND query LIKE 'LISTEN%'"
            )
            return [r["pid"] for r in rows]

        for _ in range(3):  # dropped by the server, again and again
            (pid,) = await listening_pids()
            listener.event.clear()
            await pool.execute("SELECT pg_terminate_backend($1)", pid)
            await asyncio.wait_for(listener.event.wait(), 10)  # reopened
            listener.event.clear()
            await pool.execute("NOTIFY es_test_channel")
            await asyncio.wait_for(listener.event.wait(), 10)  # and hears again
            assert (await listening_pids()) != [pid]
    finally:
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 1


async def test_stop_ends_the_wait_for_an_unreachable_database() -> None:
    listener = Listener("postgresql://postgres@127.0.0.1:1/none", ["x"])
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    await asyncio.sleep(2)  # a few failed attempts, backing off
    assert not task.done()
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 1
