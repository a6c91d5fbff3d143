"""Senders: their limits, changed with the waiting leads planned again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db import events
from db.events import Event
from db.pool import Conn
from db.queries import query
from ops.leads import NotFound

# The limits an operator sets, by column; None clears a cap (unlimited).
LIMITS = ("hourly_limit", "daily_limit", "daily_new_limit", "min_gap_seconds", "jitter_seconds")
_NOT_NULL = {"min_gap_seconds", "jitter_seconds"}


class InvalidLimit(ValueError):
    """A limit that is not a whole number in range."""


@dataclass(frozen=True, slots=True)
class Changed:
    sender_id: int
    changes: dict[str, Any]
    replanned: int  # waiting leads due again earlier than they were


def _check(changes: dict[str, int | None]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for name, value in changes.items():
        if name not in LIMITS:
            raise InvalidLimit(f"not a sender limit: {name}")
        if value is None:
            if name in _NOT_NULL:
                raise InvalidLimit(f"{name} cannot be cleared; set 0")
        elif not 0 <= value <= 10**9 or (value == 0 and name not in _NOT_NULL):
            floor = 0 if name in _NOT_NULL else 1
            raise InvalidLimit(f"{name} must be a whole number from {floor} to 1000000000")
        out[name] = value
    return out


async def set_limits(
    conn: Conn, email: str, changes: dict[str, int | None], *, actor: str, now: datetime
) -> Changed:
    """Change a sender's limits and plan its waiting leads again, in one transaction."""
    checked = _check(changes)
    async with conn.transaction():
        sender_id = await conn.fetchval(query("senders", "lock_by_email"), email)
        if sender_id is None:
            raise NotFound(f"no sender {email!r}")
        args: list[object] = []
        for name in LIMITS:
            args += [name in checked, checked.get(name)]
        await conn.execute(query("senders", "set_limits"), sender_id, *args)
        status: str = await conn.execute(query("leads", "replan_sender"), sender_id, now)
        replanned = int(status.rsplit(" ", 1)[-1])
        await events.insert(
            conn,
            Event(None, None, "sender_changed",
                  {"sender_id": sender_id, "actor": actor, "changes": checked,
                   "replanned": replanned}),
            now,
        )  # fmt: skip
    return Changed(sender_id, checked, replanned)
