"""The maintained counts (migration 0008): compaction, run now and then by the scheduler and
before each status read."""

from __future__ import annotations

from datetime import datetime

from db.pool import Conn
from db.queries import query


async def fold(conn: Conn, now: datetime) -> None:
    """Merge each key's change rows into one (one caller at a time; others return at once)."""
    await conn.execute(query("status", "fold"), now)
