"""Replies and unsubscribes reported by other systems, and one-click unsubscribe tokens."""

from __future__ import annotations

from db import stops
from db.pool import Conn
from ops.suppressions import check


async def reply(conn: Conn, address: str) -> int:
    """The address replied: stop its leads (and its company's where a sequence says so)."""
    n: int = await conn.fetchval("SELECT record_reply($1::text)", check_address(address))
    return n


async def unsubscribe(conn: Conn, address: str) -> int:
    """The address unsubscribed: suppress it and stop its leads."""
    return await stops.record_unsubscribe(conn, check_address(address))


def check_address(address: str) -> str:
    """One address (not a pattern), lower-cased; ValueError otherwise."""
    value = check(address)
    if value.startswith("*@"):
        raise ValueError(f"one email address, not a pattern: {address!r}")
    return value
