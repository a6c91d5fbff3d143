"""The daemon_replicas table: each daemon process's heartbeat, for `ops status`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import asyncpg

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


class Identity(Protocol):
    """Who a heartbeat speaks for (runtime/health.py `Heartbeat`)."""

    service: str
    host: str
    pid: int
    version: str
    started_at: datetime


class Roster:
    """The daemon_replicas table seen by one replica: what `Heartbeat.attach` reports to."""

    def __init__(self, pool: asyncpg.Pool, who: Identity) -> None:
        self.pool = pool
        self.me = Replica(who.service, who.host, who.pid, who.version, who.started_at)

    async def report(self, last_progress: datetime) -> None:
        async with self.pool.acquire(timeout=5) as conn:
            await report(conn, self.me, last_progress, datetime.now(UTC))

    async def leave(self) -> None:
        async with self.pool.acquire(timeout=2) as conn:
            await leave(conn, self.me)
