"""Webhook endpoints and the webhook outbox (db/sql/webhooks.sql): what the webhooks daemon
claims, and how each try ended."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db.pool import Conn
from db.queries import query

CHANNEL = "email_scheduler_webhooks"  # NOTIFY'd by the trigger that writes deliveries


def _q(name: str) -> str:
    return query("webhooks", name)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    endpoint_id: int
    url: str
    secret: str
    event_type: str
    body: str  # the payload as it is sent and signed
    attempts: int  # this try's number
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Finished:
    id: int
    attempts: int
    status: str  # delivered, failed, pending (tried again at next_at)
    next_at: datetime | None
    code: int | None
    error: str | None


async def add(
    conn: Conn, url: str, secret: str, event_types: list[str], *, description: str, now: datetime
) -> int:
    endpoint_id: int = await conn.fetchval(_q("add"), url, secret, event_types, description, now)
    return endpoint_id


async def endpoints(conn: Conn, *, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(_q("list"), after, limit)]


async def remove(conn: Conn, endpoint_id: int) -> bool:
    return await conn.fetchval(_q("remove"), endpoint_id) is not None


async def enqueue_test(conn: Conn, endpoint_id: int, now: datetime) -> int | None:
    async with conn.transaction():
        delivery_id: int | None = await conn.fetchval(_q("enqueue_test"), endpoint_id, now)
        if delivery_id is not None:
            await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
    return delivery_id


async def claim(
    conn: Conn, now: datetime, per_endpoint: int, busy: dict[int, int], lease_until: datetime
) -> list[Claimed]:
    rows = await conn.fetch(
        _q("claim"), now, per_endpoint, list(busy), list(busy.values()), lease_until
    )
    return [Claimed(**dict(r)) for r in rows]


async def finish(conn: Conn, done: Sequence[Finished], now: datetime) -> None:
    """Record how tries ended: the delivered leave the outbox (their endpoints count them),
    the rest are due again or failed; atomically (one statement when all were delivered)."""
    ok = [d for d in done if d.status == "delivered"]
    rest = [d for d in done if d.status != "delivered"]
    if not rest:  # the usual case: one statement, no transaction around it
        await conn.execute(_q("delivered"), [d.id for d in ok], [d.attempts for d in ok], now)
        return
    async with conn.transaction():
        if ok:
            await conn.execute(_q("delivered"), [d.id for d in ok], [d.attempts for d in ok], now)
        await conn.execute(
            _q("finish"),
            [d.id for d in rest],
            [d.attempts for d in rest],
            [d.status for d in rest],
            [d.next_at for d in rest],
            [d.code for d in rest],
            [d.error for d in rest],
            now,
        )


async def deliveries(
    conn: Conn, endpoint_id: int, status: str | None, *, before: int, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.fetch(_q("deliveries"), endpoint_id, status, before, limit)
    return [dict(r) for r in rows]


async def replay(
    conn: Conn, now: datetime, *, ids: Sequence[int] = (), endpoint_id: int | None = None
) -> list[int]:
    """Failed deliveries due again now (by id, or every failed one of an endpoint)."""
    async with conn.transaction():
        if endpoint_id is not None:
            rows = await conn.fetch(_q("replay_endpoint"), endpoint_id, now)
        else:
            rows = await conn.fetch(_q("replay"), list(ids), now)
        if rows:
            await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
    return [r["id"] for r in rows]


async def backlog(conn: Conn, now: datetime) -> tuple[int, int, float]:
    row = await conn.fetchrow(_q("backlog"), now)
    assert row is not None
    return row["pending"], row["failed"], row["oldest_s"]
