"""Sequence actions: pause and resume (a paused sequence sends nothing; its leads wait)."""

from __future__ import annotations

from datetime import datetime

from db import events
from db.events import Event
from db.pool import Conn
from ops.leads import NotFound


async def set_status(conn: Conn, key: str | int, status: str, *, actor: str, now: datetime) -> bool:
    """Pause or resume the sequence with id `key` (an int) or called `key`; False if it
    already was so."""
    async with conn.transaction():
        row = await conn.fetchrow(
            """SELECT id, status FROM sequences WHERE id = $1 OR name = $2
               ORDER BY id LIMIT 1 FOR UPDATE""",
            key if isinstance(key, int) else None,
            key if isinstance(key, str) else None,
        )
        if row is None:
            raise NotFound(
                f"no sequence {key}" if isinstance(key, int) else f"no sequence named {key!r}"
            )
        if row["status"] == status:
            return False
        await conn.execute("UPDATE sequences SET status = $2 WHERE id = $1", row["id"], status)
        kind = "sequence_paused" if status == "paused" else "sequence_resumed"
        await events.insert(
            conn, Event(None, None, kind, {"sequence_id": row["id"], "actor": actor}), now
        )
    return True
