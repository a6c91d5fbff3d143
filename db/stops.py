"""Stop conditions from Python: the SQL functions, and one-click unsubscribe tokens.

A web endpoint that serves `UNSUBSCRIBE_URL` calls `apply_unsubscribe_token` with the
`token` query parameter; `python -m db unsubscribe TOKEN` does the same from a shell.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.unsubscribe import InvalidToken, verify_token
from db.pool import Conn


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    email: str
    lead_id: int
    stopped: int  # leads stopped by this call (0 when already unsubscribed)


async def record_unsubscribe(conn: Conn, address: str) -> int:
    """Suppress an address and stop its leads."""
    n: int = await conn.fetchval("SELECT record_unsubscribe($1::text)", address)
    return n


async def apply_unsubscribe_token(conn: Conn, secret: str, token: str) -> Unsubscribed:
    """Verify a token made by the scheduler and unsubscribe the address of the lead it names.

    Raises core.unsubscribe.InvalidToken for a malformed or forged token, or one naming no
    lead; ValueError when `secret` is too short to have signed anything. Nothing changes then.
    """
    lead_id = verify_token(secret, token)
    email: str | None = await conn.fetchval("SELECT email FROM leads WHERE id = $1", lead_id)
    if email is None:
        raise InvalidToken("the unsubscribe token names no lead")
    stopped = await record_unsubscribe(conn, email)
    return Unsubscribed(email=email.lower(), lead_id=lead_id, stopped=stopped)
