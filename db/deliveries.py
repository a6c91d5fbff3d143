"""The worker's repository: claim a delivery before SMTP, record its outcome after.

Each public function is one transaction and returns the events it wrote, so the caller
logs exactly the state changes the database recorded.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from core import gate, pacing
from core.gate import AmbiguousPolicy
from core.schemas import SendJob
from db import events
from db.events import Event
from db.pool import Conn
from db.queries import query


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of trying to claim: send now (with a token) or nothing to send."""

    send: bool
    token: uuid.UUID | None = None
    attempts: int = 0
    reason: str | None = None
    events: list[Event] = field(default_factory=list)
    not_before: datetime | None = None  # the booked pacing slot: hand over no earlier


def _q(name: str) -> str:
    return query("deliveries", name)


async def _lead_state(conn: Conn, lead_id: int) -> gate.LeadState | None:
    r = await conn.fetchrow(_q("lock_lead"), lead_id)
    if r is None:
        return None
    return gate.LeadState(
        status=r["status"],
        current_step=r["current_step"],
        attempt=r["attempt"],
        sequence_status=r["sequence_status"],
        suppressed=r["suppressed"],
    )


async def _delivery_state(conn: Conn, job: SendJob) -> gate.DeliveryState | None:
    r = await conn.fetchrow(_q("get_delivery"), job.lead_id, job.step)
    return None if r is None else gate.DeliveryState(r["status"], r["lease_until"])


HANDOFF_MARGIN = timedelta(milliseconds=50)


@dataclass(frozen=True, slots=True)
class Rate:
    """How hand-offs are paced beyond each sender's rules."""

    max_wait_seconds: float = 2.0  # a slot this close is waited for, not sent back
    global_per_second: float | None = None  # GLOBAL_RATE_PER_SECOND


async def _reserve(
    conn: Conn, job: SendJob, clock: Callable[[], datetime], rng: random.Random, rate: Rate
) -> tuple[datetime, bool]:
    """Book this hand-off against its sender's pacing and the global rate.

    Returns (slot, True) when booked: the caller hands the message over at `slot`, at most
    `rate.max_wait_seconds` away. Returns (earliest slot, False) when it must go back to
    waiting. The sender's row lock (and the global row's) serialise every replica.
    """
    r = await conn.fetchrow(_q("sender_rules"), job.sender_id)
    rules = pacing.Pacing() if r is None else pacing.Pacing.from_mapping(r)
    gap_until = None
    if not rules.unlimited:
        gap_until = await conn.fetchval(_q("lock_sender"), job.sender_id)
    # Read the clock once the locks are held, and book no earlier than the commit will be
    # done: every paced hand-off then waits for its slot, so booked gaps are the gaps the
    # server sees (a slot booked in the past would make the next gap short by the commit).
    now = clock()
    if not rules.unlimited or rate.global_per_second is not None:
        now += HANDOFF_MARGIN
    horizon = now + timedelta(seconds=rate.max_wait_seconds)
    slot = now
    if not rules.unlimited:
        recent = await conn.fetch(_q("recent_sends"), job.sender_id, now)
        slot = pacing.next_slot(
            rules,
            now,
            sends=[x["at"] for x in recent],
            first_touches=[x["at"] for x in recent if x["first_touch"]],
            gap_until=gap_until,
            first_touch=job.first_touch,
        )
        if slot > horizon:
            return slot, False
    if rate.global_per_second is not None:
        step = 1 / rate.global_per_second
        booked = await conn.fetchval(_q("reserve_global"), slot, horizon, step)
        if booked is None:
            return await conn.fetchval(_q("global_next")), False
        slot = booked
    if not rules.unlimited:
        # Caps only free up as time passes, so the sender's slot still holds at a later one.
        await conn.execute(
            _q("record_send"),
            job.sender_id,
            slot,
            job.first_touch,
            pacing.gap_after(rules, slot, rng),
        )
    return slot, True


async def claim(
    pool: asyncpg.Pool,
    job: SendJob,
    outbox_id: int,
    *,
    clock: Callable[[], datetime],
    redelivered: bool,
    policy: AmbiguousPolicy,
    lease_seconds: float,
    rng: random.Random,
    rate: Rate,
) -> Claim:
    """Decide and record, in one transaction, whether this message may go to SMTP now."""
    now = clock()
    async with pool.acquire() as conn, conn.transaction():
        lead = await _lead_state(conn, job.lead_id)
        delivery = await _delivery_state(conn, job) if lead is not None else None
        decision = gate.decide(job, lead, delivery, now=now, redelivered=redelivered, policy=policy)
        if not isinstance(decision, gate.Send):
            return await _settle_decision(conn, job, outbox_id, decision, now)
        slot, booked = await _reserve(conn, job, clock, rng, rate)
        if not booked:
            return await _requeue(conn, job, slot, "pacing", now)
        token = uuid.uuid4()
        attempts = await conn.fetchval(
            _q("claim_delivery"),
            job.lead_id,
            job.step,
            job.sender_id,
            job.message_id,
            job.subject,
            outbox_id,
            token,
            now,
            lease_seconds,
            decision.reclaim,
        )
        if attempts is None:  # a concurrent claim won the row
            return Claim(send=False, reason="in_flight_elsewhere")
        return Claim(send=True, token=token, attempts=attempts, not_before=slot)


async def _settle_decision(
    conn: Conn, job: SendJob, outbox_id: int, decision: gate.Gate, now: datetime
) -> Claim:
    """Carry out every decision but Send; the caller holds the lead's row lock."""
    match decision:
        case gate.Drop(reason):
            return Claim(send=False, reason=reason)
        case gate.StopLead(reason):
            await conn.execute(_q("end_lead"), job.lead_id, job.step, "stopped", now)
            evs = [Event(job.lead_id, job.step, "stopped", {"reason": reason})]
            await events.insert_many(conn, evs, now)
            return Claim(send=False, reason=reason, events=evs)
        case gate.Requeue(at, reason):
            return await _requeue(conn, job, at, reason, now)
        case gate.Settle(status):
            return await _settle(conn, job, status, now)
        case gate.Ambiguous():
            await conn.execute(_q("mark_unknown"), job.lead_id, job.step, now)
            evs = [
                Event(
                    job.lead_id,
                    job.step,
                    "send_ambiguous",
                    {"message_id": job.message_id, "outbox_id": outbox_id},
                )
            ]
            evs += await _advance(conn, job, now)
            await events.insert_many(conn, evs, now)
            return Claim(send=False, reason="ambiguous", events=evs)
    raise AssertionError(f"not a settling decision: {decision!r}")


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message taken from the queue, as `claim_many` sees it."""

    job: SendJob
    outbox_id: int
    redelivered: bool


async def claim_many(
    pool: asyncpg.Pool,
    items: Sequence[Incoming],
    *,
    clock: Callable[[], datetime],
    policy: AmbiguousPolicy,
    lease_seconds: float,
    rng: random.Random,
    rate: Rate,
) -> list[Claim | None]:
    """`claim` for a batch: one call claims the plain sends, one transaction decides and
    claims every other message it can.

    The same decisions as `claim`, message by message. What needs more than the batch
    gives (a paced sender's booking under its row lock, taking over a stale claim, a second
    message for a lead already in the batch) is left None: the caller claims it with
    `claim` after this commit, each in its own transaction (retried on its own, so a retry
    never re-runs a claim that already committed).
    """
    claims: list[Claim | None] = [None] * len(items)
    first: dict[int, int] = {}  # lead id -> index of its first message in the batch
    for i, it in enumerate(items):
        first.setdefault(it.job.lead_id, i)
    if first and rate.global_per_second is None:
        # The common case in one call: plain sends of unpaced senders (migration 0004).
        for i, claim in (
            await _claim_sends(pool, items, first.values(), clock(), lease_seconds)
        ).items():
            claims[i] = claim
        first = {lead: i for lead, i in first.items() if claims[i] is None}
    if first:
        now = clock()
        async with pool.acquire() as conn, conn.transaction():
            batch = [items[i] for i in first.values()]
            rows = {
                r["lead_id"]: r
                for r in await conn.fetch(
                    _q("lock_leads_for_jobs"),
                    [it.job.lead_id for it in batch],
                    [it.job.step for it in batch],
                    [it.job.sender_id for it in batch],
                )
            }
            sends: list[int] = []
            for i in first.values():
                it = items[i]
                r = rows.get(it.job.lead_id)
                lead = delivery = None
                if r is not None:
                    lead = gate.LeadState(
                        status=r["status"],
                        current_step=r["current_step"],
                        attempt=r["attempt"],
                        sequence_status=r["sequence_status"],
                        suppressed=r["suppressed"],
                    )
                    if r["delivery_status"] is not None:
                        delivery = gate.DeliveryState(r["delivery_status"], r["lease_until"])
                decision = gate.decide(
                    it.job, lead, delivery, now=now, redelivered=it.redelivered, policy=policy
                )
                if isinstance(decision, gate.Send):
                    # A lead row is there (Send); a sender row may not be (as in _reserve).
                    assert r is not None
                    paced = r["min_gap_seconds"] is not None and not (
                        pacing.Pacing.from_mapping(r).unlimited
                    )
                    if not (decision.reclaim or paced or rate.global_per_second is not None):
                        sends.append(i)
                    continue
                claims[i] = await _settle_decision(conn, it.job, it.outbox_id, decision, now)
            if sends:
                tokens = {i: uuid.uuid4() for i in sends}
                won = {
                    r["lead_id"]: r["attempts"]
                    for r in await conn.fetch(
                        _q("claim_deliveries"),
                        [items[i].job.lead_id for i in sends],
                        [items[i].job.step for i in sends],
                        [items[i].job.sender_id for i in sends],
                        [items[i].job.message_id for i in sends],
                        [items[i].job.subject for i in sends],
                        [items[i].outbox_id for i in sends],
                        [tokens[i] for i in sends],
                        now,
                        lease_seconds,
                    )
                }
                for i in sends:
                    attempts = won.get(items[i].job.lead_id)
                    claims[i] = (
                        Claim(send=False, reason="in_flight_elsewhere")
                        if attempts is None
                        else Claim(send=True, token=tokens[i], attempts=attempts)
                    )
    return claims


async def _claim_sends(
    pool: asyncpg.Pool,
    items: Sequence[Incoming],
    which: Iterable[int],
    now: datetime,
    lease_seconds: float,
) -> dict[int, Claim]:
    """Claim, in one call, each of `items[which]` that the gate would send as it stands and
    whose sender is unpaced; return the claims by index (the rest take the general path)."""
    idx = list(which)
    jobs = [items[i].job for i in idx]
    tokens = [uuid.uuid4() for _ in idx]
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            _q("claim_sends"),
            [j.lead_id for j in jobs],
            [j.step for j in jobs],
            [j.attempt for j in jobs],
            [j.sender_id for j in jobs],
            [j.message_id for j in jobs],
            [j.subject for j in jobs],
            [items[i].outbox_id for i in idx],
            tokens,
            [j.not_after for j in jobs],
            now,
            lease_seconds,
        )
    won = {r["lead_id"]: r["attempts"] for r in rows}
    return {
        i: Claim(send=True, token=token, attempts=won[job.lead_id])
        for i, job, token in zip(idx, jobs, tokens, strict=True)
        if job.lead_id in won
    }


async def _requeue(conn: Conn, job: SendJob, at: datetime, reason: str, now: datetime) -> Claim:
    await conn.execute(_q("requeue_lead"), job.lead_id, job.step, at, now)
    evs = [Event(job.lead_id, job.step, "deferred", {"reason": reason, "until": at.isoformat()})]
    await events.insert_many(conn, evs, now)
    return Claim(send=False, reason=reason, events=evs)


async def _settle(conn: Conn, job: SendJob, status: str, now: datetime) -> Claim:
    if status == "failed":
        await conn.execute(_q("end_lead"), job.lead_id, job.step, "failed", now)
        evs = [Event(job.lead_id, job.step, "failed", {"reason": "delivery_failed"})]
    else:
        evs = await _advance(conn, job, now)
    await events.insert_many(conn, evs, now)
    return Claim(send=False, reason=f"already_{status}", events=evs)


async def _advance(conn: Conn, job: SendJob, now: datetime) -> list[Event]:
    rows = await conn.fetch(_q("advance_leads"), [job.lead_id], [job.step], now)
    return [_advanced(job, r) for r in rows]


def _advanced(job: SendJob, r: asyncpg.Record) -> Event:
    """The event for a lead that moved on after `job`'s step: completed, or scheduled."""
    if r["status"] == "completed":
        return Event(job.lead_id, job.step, "completed")
    return Event(
        job.lead_id, r["current_step"], "scheduled", {"next_run_at": r["next_run_at"].isoformat()}
    )


async def record_sent(
    pool: asyncpg.Pool, job: SendJob, token: uuid.UUID, *, now: datetime, smtp_code: int | None
) -> list[Event] | None:
    """Mark the delivery sent and move the lead on; None if the claim was lost meanwhile."""
    done = await record_finished_many(
        pool, [Finished(job, token, "sent", smtp_code=smtp_code)], now=now
    )
    return done[0]


async def record_ambiguous(
    pool: asyncpg.Pool, job: SendJob, token: uuid.UUID, *, now: datetime, error: str
) -> list[Event] | None:
    """The content went out and no reply came: the delivery is `unknown`, the lead moves on
    (at most once, as for a worker lost mid-send); None if the claim was lost meanwhile."""
    done = await record_finished_many(pool, [Finished(job, token, "unknown", error=error)], now=now)
    return done[0]


@dataclass(frozen=True, slots=True)
class Finished:
    """A claim whose message left: `sent` (accepted) or `unknown` (no reply after content)."""

    job: SendJob
    token: uuid.UUID
    status: str
    smtp_code: int | None = None
    error: str | None = None


async def record_finished_many(
    pool: asyncpg.Pool, items: Sequence[Finished], *, now: datetime
) -> list[list[Event] | None]:
    """`record_sent` / `record_ambiguous` for a batch, in one transaction; None for each
    claim lost meanwhile.

    One call of the database function `record_finished` (migration 0003): it locks the leads,
    finishes the deliveries, moves the leads on and writes the events, and returns those
    events, which are what the caller logs.
    """
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
    *,
    now: datetime,
    smtp_code: int | None,
    error: str,
    permanent: bool,
    bounce: bool,
    retry_at: datetime | None,
) -> list[Event] | None:
    """Record a failed attempt: schedule the retry, or fail the lead (and suppress a bounce)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_q("lock_leads"), [job.lead_id])  # first, as every writer does
        final = permanent or retry_at is None
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
        if not final:
            assert retry_at is not None
            await conn.execute(_q("requeue_lead"), job.lead_id, job.step, retry_at, now)
            evs = [
                Event(
                    job.lead_id,
                    job.step,
                    "retry_scheduled",
                    {**data, "retry_at": retry_at.isoformat()},
                )
            ]
        else:
            reason = (
                "bounced" if bounce else ("permanent_error" if permanent else "attempts_exhausted")
            )
            await conn.execute(_q("end_lead"), job.lead_id, job.step, "failed", now)
            evs = [Event(job.lead_id, job.step, "failed", {**data, "reason": reason})]
            if bounce:
                await conn.execute(_q("suppress"), job.to_address.lower(), "bounce")
        await events.insert_many(conn, evs, now)
        return evs


async def record_rejected(
    pool: asyncpg.Pool, lead_id: int | None, data: dict[str, object], now: datetime
) -> None:
    """An event for a message that failed validation and went to the dead-letter queue."""
    async with pool.acquire() as conn:
        await events.insert(conn, Event(lead_id, None, "message_rejected", data), now)


async def prune_sends(pool: asyncpg.Pool, now: datetime) -> None:
    """Forget hand-offs older than a day (pacing looks back one day at most)."""
    async with pool.acquire() as conn:
        await conn.execute(_q("prune_sends"), now)


def lease_for(timeout_seconds: float) -> float:
    """How long a claim stays live: longer than any one SMTP conversation can take."""
    return timeout_seconds * 3 + 30
