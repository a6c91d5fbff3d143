"""Sequence actions: pause and resume (a paused sequence sends nothing; its leads wait)."""

from __future__ import annotations

from datetime import datetime

from db import events
from db.events import Event
from db.pool import Conn
from ops.leads import NotFound


async def set_status(conn: Conn, name: str, status: str, *, actor: str, now: datetime) -> bool:
    """Pause or resume the sequence called `name`; False if it already was so."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT id, status FROM sequences WHERE name = $1 ORDER BY id LIMIT 1 FOR UPDATE", name
        )
        if row is None:
            raise NotFound(f"no sequence named {name!r}")
        if row["status"] == status:
            return False
        await conn.execute("UPDATE sequences SET status = $2 WHERE id = $1", row["id"], status)
        kind = "sequence_paused" if status == "paused" else "sequence_resumed"
        await events.insert(
            conn, Event(None, None, kind, {"sequence_id": row["id"], "actor": actor}), now
        )
    return True
