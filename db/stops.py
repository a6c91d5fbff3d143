"""Stop conditions from Python: the SQL functions, and one-click unsubscribe tokens.

A web endpoint that serves `UNSUBSCRIBE_URL` calls `apply_unsubscribe_token` with the
`token` query parameter; `python -m db unsubscribe TOKEN` does the same from a shell.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.unsubscribe import verify_token
from db.pool import Conn


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    email: str
    lead_id: int
    stopped: int  # leads stopped by this call (0 when already unsubscribed)


async def record_reply(conn: Conn, address: str) -> int:
    """Stop the leads of a replying address (and its company where the sequence says so)."""
    n: int = await conn.fetchval("SELECT record_reply($1::text)", address)
    return n


async def record_unsubscribe(conn: Conn, address: str) -> int:
    """Suppress an address and stop its leads."""
    n: int = await conn.fetchval("SELECT record_unsubscribe($1::text)", address)
    return n


async def apply_unsubscribe_token(conn: Conn, secret: str, token: str) -> Unsubscribed:
    """Verify a token made by the scheduler and unsubscribe what it names.

    Raises core.unsubscribe.InvalidToken for a malformed or forged token; nothing changes then.
    """
    who = verify_token(secret, token)
    stopped = await record_unsubscribe(conn, who.email)
    return Unsubscribed(email=who.email, lead_id=who.lead_id, stopped=stopped)
