"""Webhook endpoints: subscribe (the secret is shown once), list, remove, send a test
message, and see and replay the deliveries given up on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core import webhooks as core
from db import webhooks as db
from db.pool import Conn
from ops.errors import Invalid, NotFound


@dataclass(frozen=True, slots=True)
class Added:
    id: int
    url: str
    event_types: list[str]
    secret: str  # shown this once


async def add(
    conn: Conn,
    url: str,
    event_types: list[str],
    description: str = "",
    *,
    allow_private: bool,
    now: datetime,
) -> Added:
    try:
        url = core.check_url(url, allow_private=allow_private)
    except core.InvalidWebhook as exc:
        raise Invalid("url", str(exc)) from None
    try:
        types = core.check_event_types(event_types)
    except core.InvalidWebhook as exc:
        raise Invalid("event_types", str(exc)) from None
    if len(description) > 500:
        raise Invalid("description", "at most 500 characters")
    secret = core.new_secret()
    endpoint_id = await db.add(conn, url, secret, types, description=description, now=now)
    return Added(endpoint_id, url, types, secret)


async def endpoints(conn: Conn, *, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    return await db.endpoints(conn, after=after, limit=limit)


async def remove(conn: Conn, endpoint_id: int) -> None:
    if not await db.remove(conn, endpoint_id):
        raise NotFound(f"no webhook endpoint {endpoint_id}")


async def test(conn: Conn, endpoint_id: int, now: datetime) -> int:
    """Queue a `webhook.test` message to the endpoint; its delivery's id."""
    delivery_id = await db.enqueue_test(conn, endpoint_id, now)
    if delivery_id is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return delivery_id


STATUSES = ("pending", "failed")  # a delivered one leaves the outbox


async def deliveries(
    conn: Conn, endpoint_id: int, status: str | None, *, before: int = 2**63 - 1, limit: int = 100
) -> list[dict[str, Any]]:
    if status is not None and status not in STATUSES:
        raise Invalid("status", f"one of {', '.join(STATUSES)}")
    await _exists(conn, endpoint_id)
    return await db.deliveries(conn, endpoint_id, status, before=before, limit=limit)


async def replay(
    conn: Conn, now: datetime, *, ids: list[int] | None = None, endpoint_id: int | None = None
) -> list[int]:
    """Failed deliveries tried again now, with their own webhook-ids (ids given, or every
    failed one of the endpoint)."""
    if endpoint_id is not None:
        await _exists(conn, endpoint_id)
    return await db.replay(conn, now, ids=ids or (), endpoint_id=endpoint_id)


async def _exists(conn: Conn, endpoint_id: int) -> None:
    if not await conn.fetchval("SELECT true FROM webhook_endpoints WHERE id = $1", endpoint_id):
        raise NotFound(f"no webhook endpoint {endpoint_id}")
