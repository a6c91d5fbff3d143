"""Every named query prepares against the real schema (catches type and name errors early)."""

from __future__ import annotations

import asyncpg
import pytest

from db.queries import SQL_DIR, load


@pytest.mark.parametrize("table", sorted(p.stem for p in SQL_DIR.glob("*.sql")))
async def test_every_query_prepares(pool: asyncpg.Pool, table: str) -> None:
    queries = load(table)
    assert queries
    async with pool.acquire() as conn:
        for name, sql in queries.items():
            try:
                await conn.prepare(sql)
            except asyncpg.PostgresError as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{table}.{name}: {exc}")


async def test_a_released_connection_keeps_no_open_transaction(pool: asyncpg.Pool) -> None:
    """Release skips the reset query, but a transaction left open is still rolled back."""
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("CREATE TABLE left_open (x int)")
    async with pool.acquire() as conn:
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT to_regclass('left_open')") is None
