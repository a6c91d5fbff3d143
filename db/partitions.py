"""Events by month: the partitions ahead, the months past the retention, and the online
preparation of a large unpartitioned table (migration 0022)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from db.pool import Conn

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Change:
    action: str  # created | dropped | drop_postponed | deleted_from_default
    partition: str
    starts: datetime | None
    ends: datetime | None
    rows: int | None


def month_start(at: datetime, months: int = 0) -> datetime:
    """The first instant (UTC) of the month `months` after the one holding `at`."""
    at = at.astimezone(UTC)
    index = at.year * 12 + at.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


async def prepare_events(conn: asyncpg.Connection, now: datetime) -> bool:
    """Before migration 0022, outside any transaction: build what it needs on a table that
    holds rows, without blocking writers (an index built concurrently, checks added NOT VALID
    and validated under a lock that lets inserts through). The table accepts rows up to the
    first day of the month after next, which the migration makes the end of its range; it
    runs right after. False when there is nothing to prepare."""
    kind = await conn.fetchval("SELECT relkind::text FROM pg_class WHERE oid = 'events'::regclass")
    if kind != "r":  # partitioned already
        return False
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events)"):
        return False
    bound = month_start(now, 2)
    invalid = await conn.fetchval(
        """SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           WHERE c.relname = 'events_before_pkey'"""
    )
    if invalid:  # a build that was interrupted leaves an invalid index behind
        await conn.execute("DROP INDEX CONCURRENTLY events_before_pkey")
    await conn.execute(
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS events_before_pkey ON events (id, at)"
    )
    async with conn.transaction():
        await conn.execute("ALTER TABLE events DROP CONSTRAINT IF EXISTS events_before_bound")
        await conn.execute(
            "ALTER TABLE events ADD CONSTRAINT events_before_bound"
            f" CHECK (at < '{bound.isoformat()}') NOT VALID"
        )
    for check in ("events_type_registered", "events_before_bound"):
        await conn.execute(f"ALTER TABLE events VALIDATE CONSTRAINT {check}")
    log.info("events_prepared", bound=bound)
    return True


async def maintain(conn: Conn, now: datetime, retention_days: float) -> list[Change]:
    """Create the coming months' partitions, drop the ones past the retention; logged."""
    rows = await conn.fetch(
        "SELECT * FROM maintain_event_partitions($1, $2)", now, timedelta(days=retention_days)
    )
    changes = [Change(r["action"], r["partition"], r["starts"], r["ends"], r["n"]) for r in rows]
    for c in changes:
        log.info(
            "event_partitions", action=c.action, partition=c.partition, starts=c.starts,
            ends=c.ends, rows=c.rows,
        )  # fmt: skip
    return changes


async def kept_since(conn: Conn) -> datetime | None:
    """The instant before which events were dropped by the retention (None: none were)."""
    found: datetime | None = await conn.fetchval(
        "SELECT max(ends) FROM event_partitions WHERE dropped_at IS NOT NULL"
    )
    return found
