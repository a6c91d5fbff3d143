"""The daemon_replicas table: each daemon process's heartbeat, for `ops status`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from db.pool import Conn
from db.queries import query


@dataclass(frozen=True, slots=True)
class Replica:
    service: str
    host: str
    pid: int
    version: str
    started_at: datetime


# Statements here carry asyncpg's own timeout: it cancels a slow one on the server and leaves
# the connection usable (cancelling the awaiting task instead can leave it mid-operation).
TIMEOUT = 5.0


async def report(conn: Conn, me: Replica, last_progress: datetime, now: datetime) -> None:
    """Record that `me` is up and when its loop last made progress."""
    await conn.execute(
        query("replicas", "report"),
        me.service, me.host, me.pid, me.version, me.started_at, now, last_progress,
        timeout=TIMEOUT,
    )  # fmt: skip


async def leave(conn: Conn, me: Replica) -> None:
    """`me` stopped: it is no longer listed."""
    await conn.execute(query("replicas", "leave"), me.service, me.host, me.pid, timeout=TIMEOUT)
