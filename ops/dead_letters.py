"""Dead letters: messages the worker refused (or that kept crashing it), with the reason the
worker recorded, their age; replayed after a fix, or purged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker import dead_letters
from broker.topology import Names
from db.pool import Conn


@dataclass(frozen=True, slots=True)
class Letter:
    outbox_id: str | None
    reason: str  # the worker's, from its message_rejected event; else the broker's
    dead_at: datetime | None
    age_seconds: float | None
    lead_id: int | None
    body: str


async def listing(conn: Conn, url: str, names: Names, *, limit: int, now: datetime) -> list[Letter]:
    """The first `limit` dead letters, oldest first, each with why it is there."""
    found = await dead_letters.peek(url, names, limit)
    ids = [d.outbox_id for d in found if d.outbox_id]
    why: dict[str, Any] = {
        r["outbox_id"]: r
        for r in await conn.fetch(
            """SELECT DISTINCT ON (data->>'outbox_id') data->>'outbox_id' AS outbox_id,
                      data->>'error' AS error, lead_id
               FROM events WHERE type = 'message_rejected' AND data->>'outbox_id' = ANY($1)
               ORDER BY data->>'outbox_id', id DESC""",
            ids,
        )
    }
    out = []
    for d in found:
        row = why.get(d.outbox_id or "")
        out.append(
            Letter(
                outbox_id=d.outbox_id,
                reason=row["error"] if row else d.reason,
                dead_at=d.dead_at,
                age_seconds=(now - d.dead_at).total_seconds() if d.dead_at else None,
                lead_id=row["lead_id"] if row else None,
                body=d.body[:2000].decode("utf-8", "replace"),
            )
        )
    return out


async def replay(url: str, names: Names, ids: Sequence[str] | None, limit: int | None) -> list[str]:
    """Move dead letters back to the send queue: those named, or all (up to `limit`)."""
    return await dead_letters.replay(url, names, ids or None, limit)


async def purge(url: str, names: Names, ids: Sequence[str] | None) -> list[str]:
    """Drop dead letters: those named, or all."""
    return await dead_letters.purge(url, names, ids or None)
