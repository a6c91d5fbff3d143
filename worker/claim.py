"""Claiming messages for SMTP, a batch at a time: read, decide, book, write.

1. The one-call path: the messages whose claim needs nothing but their own rows (the gate
   would send them as they stand, to a sender that is not paced) are claimed by one
   database call.
2. Everything else, in one transaction per round (a lead appears once per round):
   - read: lock the leads, read their delivery and whether the sender is paced;
   - decide: `core.gate.decide` for each message;
   - book: lock the paced senders (and the global rate row), give each hand-off its slot
     by `core.pacing`, write the bookings in one statement;
   - write: the claims in one statement, the requeues in one, the rare settling decisions.

Each step that writes is its own transaction and is retried on its own, so a retry never
re-runs a claim that already committed.
"""

from __future__ import annotations

import bisect
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import asyncpg

from core import gate, pacing
from core.gate import AmbiguousPolicy
from core.schemas import SendJob
from db import deliveries, ledger
from db.events import Event
from db.pool import Conn

# Runs one database step (a transaction), retrying it while the database is away.
Retrying = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]

# A paced hand-off is booked no earlier than the commit will be done: every one then waits
# for its slot, so booked gaps are the gaps the server sees.
HANDOFF_MARGIN = timedelta(milliseconds=50)


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message to claim: its job (read from the outbox), outbox row and redelivery flag."""

    job: SendJob
    outbox_id: int
    redelivered: bool
    provider: str | None = None  # the recipient's provider (core/providers.py)


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of trying to claim: send now (with a token) or nothing to send."""

    send: bool
    token: uuid.UUID | None = None
    attempts: int = 0
    reason: str | None = None
    events: list[Event] = field(default_factory=list)
    not_before: datetime | None = None  # the booked pacing slot: hand over no earlier


@dataclass(frozen=True, slots=True)
class Rate:
    """How hand-offs are paced beyond each sender's rules."""

    max_wait_seconds: float = 2.0  # a slot this close is waited for, not sent back
    global_per_second: float | None = None  # GLOBAL_RATE_PER_SECOND


@dataclass(frozen=True, slots=True)
class _Booked:
    slot: datetime | None  # None: unpaced, hand over at once


@dataclass(frozen=True, slots=True)
class _TooFar:
    at: datetime
    reason: str


class Claimer:
    """Claims batches of messages; the rules of a claim, in the order it applies them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        clock: Callable[[], datetime],
        policy: AmbiguousPolicy,
        lease_seconds: float,
        rng: random.Random,
        rate: Rate,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.policy = policy
        self.lease_seconds = lease_seconds
        self.rng = rng
        self.rate = rate

    async def claim(self, items: Sequence[Incoming], retrying: Retrying) -> list[Claim]:
        """Claim what may go to SMTP now; a Claim per item, in order."""
        claims: list[Claim | None] = [None] * len(items)
        rounds: list[list[int]] = []
        for i, it in enumerate(items):  # a lead once per round
            for r in rounds:
                if all(items[j].job.lead_id != it.job.lead_id for j in r):
                    r.append(i)
                    break
            else:
                rounds.append([i])
        if rounds and self.rate.global_per_second is None:
            first = rounds[0]
            done: dict[int, Claim] = await retrying(partial(self._plain, items, first))
            for i, c in done.items():
                claims[i] = c
            rounds[0] = [i for i in first if i not in done]
        for r in rounds:
            if r:
                got: dict[int, Claim] = await retrying(partial(self._round, items, r))
                for i, c in got.items():
                    claims[i] = c
        assert all(c is not None for c in claims)
        return [c for c in claims if c is not None]

    async def _plain(self, items: Sequence[Incoming], which: list[int]) -> dict[int, Claim]:
        """The one-call path; the claims it made, by index."""
        todo = [
            deliveries.ToClaim(items[i].job, items[i].outbox_id, uuid.uuid4(), reclaim=False)
            for i in which
        ]
        async with self.pool.acquire() as conn:
            won = await deliveries.claim_plain(conn, todo, self.clock(), self.lease_seconds)
        return {
            i: Claim(send=True, token=t.token, attempts=won[t.job.lead_id])
            for i, t in zip(which, todo, strict=True)
            if t.job.lead_id in won
        }

    async def _round(self, items: Sequence[Incoming], which: list[int]) -> dict[int, Claim]:
        """Read, decide, book, write: one transaction for messages of distinct leads."""
        out: dict[int, Claim] = {}
        now = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await deliveries.lock(conn, [items[i].job for i in which])
            sends: list[tuple[int, gate.Send, bool]] = []
            requeues: list[tuple[int, datetime, str]] = []
            for i in which:
                it = items[i]
                state = locked.get(it.job.lead_id)
                decision = gate.decide(
                    it.job,
                    state.lead if state else None,
                    state.delivery if state else None,
                    now=now,
                    redelivered=it.redelivered,
                    policy=self.policy,
                )
                match decision:
                    case gate.Send():
                        assert state is not None
                        sends.append((i, decision, state.paced))
                    case gate.Drop(reason):
                        out[i] = Claim(send=False, reason=reason)
                    case gate.Requeue(at, reason):
                        requeues.append((i, at, reason))
                    case _:
                        evs = await deliveries.settle(conn, it.job, it.outbox_id, decision, now)
                        out[i] = Claim(send=False, reason=_reason(decision), events=evs)
            booked = await self._book(conn, [(items[i], paced) for i, _, paced in sends])
            to_claim: list[tuple[int, deliveries.ToClaim, datetime | None]] = []
            for (i, send, _), b in zip(sends, booked, strict=True):
                if isinstance(b, _TooFar):
                    requeues.append((i, b.at, b.reason))
                else:
                    it = items[i]
                    todo = deliveries.ToClaim(it.job, it.outbox_id, uuid.uuid4(), send.reclaim)
                    to_claim.append((i, todo, b.slot))
            won = await deliveries.claim(conn, [t for _, t, _ in to_claim], now, self.lease_seconds)
            for i, t, slot in to_claim:
                attempts = won.get(t.job.lead_id)
                out[i] = (
                    Claim(send=False, reason="in_flight_elsewhere")
                    if attempts is None
                    else Claim(send=True, token=t.token, attempts=attempts, not_before=slot)
                )
            evs = await deliveries.requeue(
                conn, [(items[i].job, at, reason) for i, at, reason in requeues], now
            )
            for (i, _, reason), ev in zip(requeues, evs, strict=True):
                out[i] = Claim(send=False, reason=reason, events=[ev])
        return out

    async def _book(self, conn: Conn, jobs: list[tuple[Incoming, bool]]) -> list[_Booked | _TooFar]:
        """Give each hand-off its slot under the senders' (and the global) row locks."""
        per_second = self.rate.global_per_second
        if not any(paced for _, paced in jobs) and per_second is None:
            return [_Booked(None) for _ in jobs]
        senders = await ledger.lock(
            conn, [it.job.sender_id for it, paced in jobs if paced], self.clock()
        )
        global_next = await ledger.lock_global(conn) if per_second is not None else None
        # Read the clock once the locks are held, and book no earlier than the commit.
        now = self.clock() + HANDOFF_MARGIN
        horizon = now + timedelta(seconds=self.rate.max_wait_seconds)
        out: list[_Booked | _TooFar] = []
        bookings: list[ledger.Booking] = []
        gaps: dict[int, datetime | None] = {}
        for it, paced in jobs:
            job = it.job
            sender = senders.get(job.sender_id) if paced else None
            slot = now
            capped: list[datetime] | None = None
            if sender is not None:
                slot = pacing.next_slot(
                    sender.rules,
                    now,
                    sends=sender.sends,
                    first_touches=sender.first_touches,
                    gap_until=sender.gap_until,
                    first_touch=job.first_touch,
                )
                if slot > horizon:
                    out.append(_TooFar(slot, "pacing"))
                    continue
                if it.provider in sender.provider_caps:
                    capped = sender.provider_sends[it.provider]
                    slot = pacing.provider_slot(sender.provider_caps[it.provider], capped, slot)
                    if slot > horizon:
                        out.append(_TooFar(slot, "provider_cap"))
                        continue
            if per_second is not None:
                slot = max(slot, global_next or slot)
                if slot > horizon:
                    out.append(_TooFar(slot, "global_rate"))
                    continue
                global_next = slot + timedelta(seconds=1 / per_second)
            if sender is not None:
                # Caps only free up as time passes, so the sender's slot still holds later.
                bisect.insort(sender.sends, slot)
                if job.first_touch:
                    bisect.insort(sender.first_touches, slot)
                if capped is not None:
                    bisect.insort(capped, slot)
                sender.gap_until = gaps[sender.id] = pacing.gap_after(sender.rules, slot, self.rng)
                bookings.append(ledger.Booking(sender.id, slot, job.first_touch, it.provider))
            out.append(_Booked(slot))
        await ledger.record(conn, bookings, gaps)
        if per_second is not None and global_next is not None:
            await ledger.set_global(conn, global_next)
        return out


def _reason(decision: gate.Gate) -> str:
    match decision:
        case gate.StopLead(reason):
            return reason
        case gate.Settle(status):
            return f"already_{status}"
        case gate.Ambiguous():
            return "ambiguous"
    return type(decision).__name__.lower()
