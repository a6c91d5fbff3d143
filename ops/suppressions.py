"""Suppressions: addresses (and, only here, whole domains) that are never sent to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from db import events
from db.events import Event
from db.pool import Conn

# An address, or *@domain: visible ASCII but for @ and * (the addresses mail goes to here;
# no spaces, controls or other patterns). The REST API's schema says the same with these.
_PART = r"[!-)+-?A-~]+"
ADDRESS_PATTERN = rf"^{_PART}@{_PART}\.{_PART}$"
ENTRY_PATTERN = rf"^(?:{_PART}|\*)@{_PART}\.{_PART}$"
_ENTRY = re.compile(ENTRY_PATTERN)


class InvalidEntry(ValueError):
    """Not an address nor `*@domain`."""


def check(entry: str) -> str:
    """The entry in the form it is stored (lower case), or InvalidEntry."""
    value = entry.strip().lower()
    if not _ENTRY.match(value):
        raise InvalidEntry(f"not an email address nor *@domain: {entry!r}")
    return value


@dataclass(frozen=True, slots=True)
class Suppression:
    email: str
    reason: str
    created_at: datetime


async def add(conn: Conn, entry: str, reason: str = "manual") -> tuple[bool, int]:
    """Suppress an address (stopping its live leads) or a domain; (added, leads stopped)."""
    value = check(entry)
    added = await conn.fetchval(
        "INSERT INTO suppressions (email, reason) VALUES ($1, $2) ON CONFLICT (email) DO NOTHING"
        " RETURNING true",
        value,
        reason,
    )
    stopped = 0
    if not value.startswith("*@"):
        stopped = await conn.fetchval("SELECT stop_leads($1, 'suppressed')", value)
    return bool(added), stopped


async def remove(conn: Conn, entry: str, *, actor: str, now: datetime) -> bool:
    """Lift a suppression, with a `suppression_lifted` event naming who; True if there was one
    (stopped leads stay stopped; a failed one can be retried then)."""
    async with conn.transaction():
        reason = await conn.fetchval(
            "DELETE FROM suppressions WHERE email = $1 RETURNING reason", check(entry)
        )
        if reason is None:
            return False
        data = {"entry": entry.lower(), "reason": reason, "actor": actor}
        await events.insert(conn, Event(None, None, "suppression_lifted", data), now)
    return True


async def listing(conn: Conn, *, limit: int = 1000, after: str = "") -> list[Suppression]:
    """Suppressions in address order, `limit` after `after` (a cursor)."""
    rows = await conn.fetch(
        """SELECT email, reason, created_at FROM suppressions
           WHERE email > $1 ORDER BY email LIMIT $2""",
        after,
        limit,
    )
    return [Suppression(r["email"], r["reason"], r["created_at"]) for r in rows]
