"""The worker's repository: deliveries and the lead they belong to.

Claims are written before the SMTP conversation and finished after it. Every function
takes the caller's connection (its transaction) or one batch's call; the decisions are the
caller's (worker/claim.py, core/gate.py, core/attempts.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from core import gate
from core.attempts import Fail, Retry
from core.lifecycle import Status
from core.schemas import SendJob
from db import events
from db.events import Event
from db.pool import Conn
from db.queries import query


def _q(name: str) -> str:
    return query("deliveries", name)


def _status(name: str) -> str:
    return query("lead_status", name)


@dataclass(frozen=True, slots=True)
class Locked:
    """A message's lead and delivery as locked for a claim, and whether its sender is paced."""

    lead: gate.LeadState | None
    delivery: gate.DeliveryState | None
    paced: bool


async def lock(conn: Conn, jobs: Sequence[SendJob]) -> dict[int, Locked]:
    """Lock the leads of `jobs` (id order) and read their state; by lead id (a missing lead
    is absent)."""
    rows = await conn.fetch(
        _q("lock_leads_for_jobs"),
        [j.lead_id for j in jobs],
        [j.step for j in jobs],
        [j.sender_id for j in jobs],
    )
    out: dict[int, Locked] = {}
    for r in rows:
        delivery = None
        if r["delivery_status"] is not None:
            delivery = gate.DeliveryState(r["delivery_status"], r["lease_until"])
        lead = gate.LeadState(
            status=r["status"],
            current_step=r["current_step"],
            attempt=r["attempt"],
            sequence_status=r["sequence_status"],
            suppressed=r["suppressed"],
            sender_exists=r["sender_exists"],
            sender_paused=r["sender_paused"],
        )
        out[r["lead_id"]] = Locked(lead, delivery, r["paced"])
    return out


@dataclass(frozen=True, slots=True)
class ToClaim:
    job: SendJob
    outbox_id: int
    token: uuid.UUID
    reclaim: bool


async def claim(
    conn: Conn, items: Sequence[ToClaim], now: datetime, lease_seconds: float
) -> dict[int, int]:
    """Claim deliveries (the caller holds the leads' locks); attempts by lead id of each
    claim won. A row moves only from 'deferred' (a retry) or, for a reclaim, from 'sending'."""
    if not items:
        return {}
    rows = await conn.fetch(
        _q("claim_deliveries"),
        [it.job.lead_id for it in items],
        [it.job.step for it in items],
        [it.job.sender_id for it in items],
        [it.job.message_id for it in items],
        [it.job.subject for it in items],
        [it.outbox_id for it in items],
        [it.token for it in items],
        now,
        lease_seconds,
        [it.job.lead_id for it in items if it.reclaim],
    )
    return {r["lead_id"]: r["attempts"] for r in rows}


async def claim_plain(
    conn: Conn, items: Sequence[ToClaim], now: datetime, lease_seconds: float
) -> dict[int, int]:
    """In one call, claim each message whose claim needs nothing but its own rows: the gate
    would send it without a reclaim, and its sender is not paced (db/functions/deliveries.sql
    `claim_sends`). Attempts by lead id of each claimed; the rest is the caller's."""
    jobs = [it.job for it in items]
    rows = await conn.fetch(
        _q("claim_sends"),
        [j.lead_id for j in jobs],
        [j.step for j in jobs],
        [j.attempt for j in jobs],
        [j.sender_id for j in jobs],
        [j.message_id for j in jobs],
        [j.subject for j in jobs],
        [it.outbox_id for it in items],
        [it.token for it in items],
        [j.not_after for j in jobs],
        now,
        lease_seconds,
    )
    return {r["lead_id"]: r["attempts"] for r in rows}


async def requeue(
    conn: Conn, items: Sequence[tuple[SendJob, datetime, str]], now: datetime
) -> list[Event]:
    """Give leads back to the scheduler, due at each one's time (retry, window, pacing)."""
    if not items:
        return []
    await conn.execute(
        _status("requeue_leads"),
        [j.lead_id for j, _, _ in items],
        [j.step for j, _, _ in items],
        [at for _, at, _ in items],
        now,
    )
    evs = [
        Event(j.lead_id, j.step, "deferred", {"reason": reason, "until": at.isoformat()})
        for j, at, reason in items
    ]
    await events.insert_many(conn, evs, now)
    return evs


async def settle(
    conn: Conn, job: SendJob, outbox_id: int, decision: gate.Gate, now: datetime
) -> list[Event]:
    """Carry out a decision that sends nothing and is not a requeue; the events written."""
    evs: list[Event]
    match decision:
        case gate.StopLead(reason):
            await conn.execute(_status("end_lead"), job.lead_id, job.step, Status.STOPPED, now)
            evs = [Event(job.lead_id, job.step, "stopped", {"reason": reason})]
        case gate.Settle("failed"):
            await conn.execute(_status("end_lead"), job.lead_id, job.step, Status.FAILED, now)
            evs = [Event(job.lead_id, job.step, "failed", {"reason": "delivery_failed"})]
        case gate.Settle(_):
            evs = await _advance(conn, job, now)
        case gate.Ambiguous():
            await conn.execute(_q("mark_unknown"), job.lead_id, job.step, now)
            evs = [
                Event(
                    job.lead_id,
                    job.step,
                    "send_ambiguous",
                    {"message_id": job.message_id, "outbox_id": outbox_id},
                ),
                *await _advance(conn, job, now),
            ]
        case _:
            raise AssertionError(f"not a settling decision: {decision!r}")
    await events.insert_many(conn, evs, now)
    return evs


async def _advance(conn: Conn, job: SendJob, now: datetime) -> list[Event]:
    """Move a lead on after `job`'s step; the event it gets (completed, or scheduled)."""
    rows = await conn.fetch(_status("advance_leads"), [job.lead_id], [job.step], now)
    return [
        Event(job.lead_id, job.step, "completed")
        if r["status"] == Status.COMPLETED
        else Event(
            job.lead_id,
            r["current_step"],
            "scheduled",
            {"next_run_at": r["next_run_at"].isoformat()},
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class Finished:
    """A claim whose message left: `sent` (accepted) or `unknown` (no reply after content)."""

    job: SendJob
    token: uuid.UUID
    status: str
    smtp_code: int | None = None
    error: str | None = None


async def record_finished(
    pool: asyncpg.Pool, items: Sequence[Finished], *, now: datetime
) -> list[list[Event] | None]:
    """Finish claims whose message left, move the leads on and write the events, in one call
    (db/functions/deliveries.sql `record_finished`); the events written per item, None for a
    claim lost meanwhile."""
    if not items:
        return []
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            _q("record_finished"),
            [it.job.lead_id for it in items],
            [it.job.step for it in items],
            [it.token for it in items],
            [it.status for it in items],
            [it.smtp_code for it in items],
            [None if it.error is None else it.error[:1000] for it in items],
            [it.job.message_id for it in items],
            now,
        )
    out: list[list[Event] | None] = [None] * len(items)
    for r in rows:
        evs = out[r["item"] - 1]
        if evs is None:
            evs = out[r["item"] - 1] = []
        evs.append(Event(r["lead_id"], r["step"], r["type"], r["data"]))
    return out


async def record_failure(
    pool: asyncpg.Pool,
    job: SendJob,
    token: uuid.UUID,
    decision: Retry | Fail,
    *,
    now: datetime,
    smtp_code: int | None,
    error: str,
) -> list[Event] | None:
    """Record a failed attempt as decided: the retry scheduled, or the lead failed (and a
    bounced address suppressed). None if the claim was lost meanwhile."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_q("lock_leads"), [job.lead_id])  # first, as every writer does
        final = isinstance(decision, Fail)
        attempts = await conn.fetchval(
            _q("finish_delivery"),
            job.lead_id,
            job.step,
            "failed" if final else "deferred",
            now,
            smtp_code,
            error[:1000],
            token,
        )
        if attempts is None:
            return None
        data = {"smtp_code": smtp_code, "error": error[:500], "attempts": attempts}
        evs: list[Event]
        match decision:
            case Retry(at):
                await conn.execute(_status("requeue_leads"), [job.lead_id], [job.step], [at], now)
                evs = [
                    Event(
                        job.lead_id,
                        job.step,
                        "retry_scheduled",
                        {**data, "retry_at": at.isoformat()},
                    )
                ]
            case Fail(reason, suppress):
                await conn.execute(_status("end_lead"), job.lead_id, job.step, Status.FAILED, now)
                evs = [Event(job.lead_id, job.step, "failed", {**data, "reason": reason})]
                if suppress:
                    await conn.execute(_q("suppress"), job.to_address.lower(), "bounce")
        await events.insert_many(conn, evs, now)
        return evs


async def record_hold(
    pool: asyncpg.Pool,
    job: SendJob,
    token: uuid.UUID,
    *,
    until: datetime,
    reason: str,
    now: datetime,
    booked_at: datetime | None = None,
    why: str = "smtp_circuit_open",
) -> list[Event] | None:
    """Give a claimed message back unsent, its attempt not spent and its pacing booking
    (`booked_at`) released: the lead is due again at `until` (its requeue event says `why`).
    None if the claim was lost."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_q("lock_leads"), [job.lead_id])
        attempts = await conn.fetchval(
            _q("release_delivery"), job.lead_id, job.step, now, reason[:1000], token
        )
        if attempts is None:
            return None
        if booked_at is not None and job.sender_id is not None:
            await conn.execute(query("ledger", "release"), job.sender_id, booked_at)
        return await requeue(conn, [(job, until, why)], now)


async def set_circuit(
    pool: asyncpg.Pool,
    account: str,
    *,
    state: str,
    reason: str,
    retry_at: datetime | None,
    now: datetime,
    event: str | None,
) -> None:
    """Record an account's circuit as it is now, with an event when it opened or closed."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_q("set_circuit"), account, state, reason, retry_at, now)
        if event is not None:
            data = {"account": account, "reason": reason,
                    "retry_at": retry_at.isoformat() if retry_at else None}  # fmt: skip
            await events.insert(conn, Event(None, None, event, data), now)


async def close_circuit(pool: asyncpg.Pool, account: str, now: datetime) -> bool:
    """An account worked: close its circuit in the table (an event if it was not closed)."""
    async with pool.acquire() as conn, conn.transaction():
        changed = await conn.fetchval(_q("close_circuit"), account, now)
        if changed:
            await events.insert(
                conn, Event(None, None, "smtp_circuit_closed", {"account": account}), now
            )
        return bool(changed)


async def record_rejected(
    pool: asyncpg.Pool, lead_id: int | None, data: dict[str, object], now: datetime
) -> None:
    """An event for a message that failed validation and went to the dead-letter queue."""
    async with pool.acquire() as conn:
        await events.insert(conn, Event(lead_id, None, "message_rejected", data), now)


def lease_for(timeout_seconds: float) -> float:
    """How long a claim stays live: longer than any one SMTP conversation can take."""
    return timeout_seconds * 3 + 30


async def set_backoff(
    pool: asyncpg.Pool, sender_id: int, provider: str, *, until: datetime, reason: str,
    now: datetime,
) -> None:  # fmt: skip
    """A sender's backoff at a provider, as `ops status` shows it."""
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO provider_backoffs (sender_id, provider, until, reason, updated_at)
               SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM senders WHERE id = $1)
               ON CONFLICT (sender_id, provider)
               DO UPDATE SET until = $3, reason = $4, updated_at = $5""",
            sender_id, provider, until, reason, now,
        )  # fmt: skip


async def end_backoff(pool: asyncpg.Pool, sender_id: int, provider: str) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "DELETE FROM provider_backoffs WHERE sender_id = $1 AND provider = $2",
            sender_id, provider,
        )  # fmt: skip
