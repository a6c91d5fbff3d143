"""The scheduler's repository: claim due leads, assign senders, apply decisions, rescue."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

from core import guard
from core.lifecycle import Status
from core.pacing import Pacing
from core.planner import DueLead
from db.pool import Conn
from db.queries import COUNT_CAP, query

_DUE_FIELDS = tuple(f.name for f in fields(DueLead))


@dataclass(frozen=True, slots=True)
class LeadUpdate:
    lead_id: int
    status: Status
    next_run_at: datetime | None = None
    attempt_inc: int = 0


@dataclass(frozen=True, slots=True)
class OutboxRow:
    lead_id: int
    step: int
    attempt: int
    payload: str


@dataclass(frozen=True, slots=True)
class SenderCandidate:
    sequence_id: int
    sender_id: int
    email: str
    name: str | None
    daily_limit: int | None
    sent_last_day: int
    assigned: int


@dataclass(frozen=True, slots=True)
class PacingState:
    """A paced sender as the scheduler sees it: rules, last day's hand-offs, in flight."""

    sender_id: int
    rules: Pacing
    sends: list[datetime]
    first_touches: list[datetime]
    gap_until: datetime | None
    queued_first: int
    queued_followups: int
    waiting: list[datetime]  # due times of its waiting leads in the next day (first 5,000)
    waiting_first: list[datetime]  # those of them that are first touches


@dataclass(frozen=True, slots=True)
class Rescued:
    lead_id: int
    step: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Backlog:
    due: int
    queued: int
    lag_s: float


async def claim_due_ids(conn: Conn, now: datetime, limit: int) -> list[tuple[int, int]]:
    """Lock up to `limit` due leads for the current transaction; (id, current step) of each
    (`load_due` reads the rest)."""
    rows = await conn.fetch(query("leads", "claim_due_ids"), now, limit)
    return [(r["id"], r["current_step"]) for r in rows]


async def load_due(conn: Conn, lead_ids: list[int]) -> list[DueLead]:
    """What planning needs of leads the caller has locked, in the order of `lead_ids`."""
    rows = await conn.fetch(query("leads", "load_due_leads"), lead_ids)
    return [DueLead(**{k: r[k] for k in _DUE_FIELDS}) for r in rows]


async def sender_candidates(
    conn: Conn, sequence_ids: list[int], now: datetime
) -> list[SenderCandidate]:
    """Each sequence's senders with their load, to assign leads that have none."""
    rows = await conn.fetch(query("leads", "sender_candidates"), sequence_ids, now)
    return [
        SenderCandidate(
            sequence_id=r["sequence_id"],
            sender_id=r["sender_id"],
            email=r["email"],
            name=r["name"],
            daily_limit=guard.daily_cap(r, now),
            sent_last_day=r["sent_last_day"],
            assigned=r["assigned"],
        )
        for r in rows
    ]


async def assign_senders(conn: Conn, assignments: dict[int, int], now: datetime) -> None:
    """Give leads their sender for the rest of the sequence."""
    if assignments:
        await conn.execute(
            query("leads", "assign_senders"), list(assignments), list(assignments.values()), now
        )


async def apply(
    conn: Conn, updates: list[LeadUpdate], outbox: list[OutboxRow], now: datetime
) -> None:
    """Write a batch's lead updates and outbox rows (the caller's transaction)."""
    if updates:
        await conn.execute(
            query("lead_status", "apply_decisions"),
            [u.lead_id for u in updates],
            [u.status for u in updates],
            [u.next_run_at for u in updates],
            [u.attempt_inc for u in updates],
            now,
        )
    if outbox:
        await conn.execute(
            query("leads", "insert_outbox"),
            [o.lead_id for o in outbox],
            [o.step for o in outbox],
            [o.attempt for o in outbox],
            [o.payload for o in outbox],
            now,
        )


async def next_due_at(conn: Conn) -> datetime | None:
    """When the earliest waiting lead becomes due."""
    value: datetime | None = await conn.fetchval(query("leads", "next_due_at"))
    return value


async def rescue_stuck(
    conn: Conn, now: datetime, after_seconds: float, limit: int
) -> list[Rescued]:
    """Send leads whose in-flight message was lost back to waiting."""
    rows = await conn.fetch(query("lead_status", "rescue_stuck"), now, after_seconds, limit)
    return [Rescued(r["id"], r["current_step"], r["attempt"]) for r in rows]


async def backlog(conn: Conn, now: datetime, cap: int = COUNT_CAP) -> Backlog:
    """Due and queued lead counts (up to `cap`) and how late the oldest due lead is."""
    r = await conn.fetchrow(query("leads", "backlog"), now, cap)
    assert r is not None
    return Backlog(due=r["due"], queued=r["queued"], lag_s=float(r["lag_s"] or 0.0))


async def pacing_state(conn: Conn, sender_ids: list[int], now: datetime) -> list[PacingState]:
    """The paced senders among `sender_ids` (unpaced ones are left out)."""
    rows = await conn.fetch(query("leads", "pacing_state"), sender_ids, now)
    return [
        PacingState(
            sender_id=r["sender_id"],
            rules=Pacing.from_mapping(r, now),
            sends=list(r["sends"]),
            first_touches=list(r["first_touches"]),
            gap_until=r["next_send_at"],
            queued_first=r["queued_first"],
            queued_followups=r["queued_followups"],
            waiting=list(r["waiting"]),
            waiting_first=list(r["waiting_first"]),
        )
        for r in rows
    ]


async def global_pace_state(conn: Conn) -> tuple[datetime | None, int]:
    """The deployment's next free hand-off slot and how many messages are in flight."""
    r = await conn.fetchrow(query("leads", "global_pace_state"))
    assert r is not None
    return r["next_at"], r["queued"]
