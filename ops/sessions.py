"""Console sessions kept in PostgreSQL: a sign-in starts one (the cookie carries only a
random token); each request checks it is live; signing out, an operator, or the person
leaving CONSOLE_ALLOWED ends it, effective at the next request."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from db.pool import Conn
from db.queries import query

SEEN_EVERY = timedelta(minutes=1)  # how often a live session's last use is written


def _q(name: str) -> str:
    return query("sessions", name)


def _id(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def key(token: str) -> str:
    """How the session list names a session (not enough to use it)."""
    return _id(token).hex()[:16]


async def start(conn: Conn, email: str, *, max_age: float, now: datetime) -> str:
    """A new session for `email`; its token (for the cookie, never stored)."""
    token = secrets.token_urlsafe(32)
    await conn.execute(_q("start"), _id(token), email, now, now + timedelta(seconds=max_age))
    return token


async def person(conn: Conn, token: str, now: datetime) -> str | None:
    """Who a live session is for; None when it ended, expired or never was."""
    row = await conn.fetchrow(_q("live"), _id(token), now)
    if row is None:
        return None
    if now - row["seen_at"] >= SEEN_EVERY:
        await conn.execute(_q("seen"), _id(token), now)
    email: str = row["email"]
    return email


async def end(conn: Conn, token: str, why: str, now: datetime) -> str | None:
    email: str | None = await conn.fetchval(_q("end"), _id(token), now, why)
    return email


async def end_by_key(conn: Conn, key: str, why: str, now: datetime) -> str | None:
    email: str | None = await conn.fetchval(_q("end_by_key"), key, now, why)
    return email


async def listing(conn: Conn, now: datetime) -> list[dict[str, Any]]:
    await conn.execute(_q("prune"), now)
    return [dict(r) for r in await conn.fetch(_q("listing"), now)]
