"""The outbox: the pump claims unpublished rows, marks them published and prunes old ones;
the worker reads the jobs they hold."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.schemas import ref_body
from db.pool import Conn
from db.queries import COUNT_CAP, query


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    body: bytes


async def claim_unpublished(conn: Conn, limit: int, now: datetime) -> list[Pending]:
    """Lock up to `limit` unpublished, available rows for the current transaction; each with
    the message body that names it (core.schemas.JobRef)."""
    rows = await conn.fetch(query("outbox", "claim_unpublished"), limit, now)
    return [Pending(r["id"], ref_body(r["lead_id"], r["step"], r["attempt"])) for r in rows]


@dataclass(frozen=True, slots=True)
class Stored:
    """An outbox row as the worker reads it: whom it is for, and the job as JSON text."""

    id: int
    lead_id: int
    step: int
    attempt: int
    payload: str


async def jobs(conn: Conn, outbox_ids: list[int]) -> dict[int, Stored]:
    """The outbox rows with these ids (rows pruned or never written are absent)."""
    rows = await conn.fetch(query("outbox", "jobs"), outbox_ids)
    return {r["id"]: Stored(**dict(r)) for r in rows}


async def mark_published(conn: Conn, ids: list[int], now: datetime) -> None:
    """Record that the broker confirmed these rows."""
    await conn.execute(query("outbox", "mark_published"), ids, now)


async def prune_published(conn: Conn, before: datetime, limit: int) -> int:
    """Delete up to `limit` rows published before `before`; return how many."""
    status: str = await conn.execute(query("outbox", "prune_published"), before, limit)
    return int(status.rsplit(" ", 1)[-1])


async def backlog(conn: Conn, now: datetime, cap: int = COUNT_CAP) -> tuple[int, float]:
    """Unpublished row count (up to `cap`) and the age of the oldest one, in seconds."""
    r = await conn.fetchrow(query("outbox", "backlog"), now, cap)
    assert r is not None
    return int(r["unpublished"]), float(r["oldest_s"] or 0.0)
