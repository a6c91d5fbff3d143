"""The worker's claim against the rules it applies (core.gate, core.pacing), over every
combination of lead, sequence, suppression, delivery, window and sender state, paced ones
included:

- the one-call path (`claim_sends`) claims exactly the messages `gate.decide` would send
  without a reclaim, for senders that are not paced, and leaves the rest;
- the whole claim (both paths) gives each message the gate's decision, and books a paced
  sender's hand-off only when its limits allow one within the wait horizon."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from core import gate
from core.gate import AmbiguousPolicy
from core.schemas import SendJob
from db import deliveries
from db.pool import Conn
from db.queries import query
from tests.integration.helpers import claim_all, nested_plans
from worker.claim import Incoming

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LEAD_STATUSES = ("queued", "active", "paused", "completed")
DELIVERIES = (None, "deferred", "sending_live", "sending_expired", "sent", "unknown", "failed")
WINDOWS = (None, NOW - timedelta(seconds=1), NOW, NOW + timedelta(hours=1))
# Sender ids: 1 unlimited, 2 minimum gap, 3 hourly cap, 99 no such row. Only an existing
# unpaced sender's messages are the one call's; the rest take the general path.
SENDERS = {1: True, 2: False, 3: False, 99: False}  # id -> claimable in the one call


@dataclass(frozen=True)
class Case:
    lead_status: str
    on_step: bool
    on_attempt: bool
    sequence_active: bool
    suppressed: bool
    delivery: str | None
    not_after: datetime | None
    sender_id: int


CASES = [Case(*c) for c in itertools.product(
    LEAD_STATUSES, (True, False), (True, False), (True, False), (True, False), DELIVERIES,
    WINDOWS, SENDERS,
)]  # fmt: skip


def _job(lead_id: int, case: Case) -> SendJob:
    return SendJob(
        lead_id=lead_id,
        step=1,
        attempt=1,
        sender_id=case.sender_id,
        from_address="s@acme.test",
        to_address=f"l{lead_id}@x.test",
        subject="s",
        text="t",
        message_id=f"<{lead_id}.1@acme.test>",
        not_after=case.not_after,
    )


def _gate_sends(job: SendJob, case: Case) -> bool:
    decision = _decision(job, case, sender_exists=case.sender_id != 99)
    return decision == gate.Send(reclaim=False) and SENDERS[case.sender_id]


async def _load(pool: asyncpg.Pool, cases: list[Case]) -> None:
    await pool.execute("""
        TRUNCATE senders, sequences, leads, deliveries, suppressions RESTART IDENTITY CASCADE;
        INSERT INTO senders (id, email, min_gap_seconds, hourly_limit) VALUES
            (1, 'u@acme.test', 0, NULL), (2, 'g@acme.test', 60, NULL), (3, 'c@acme.test', 0, 5);
        INSERT INTO sequences (id, name, status) VALUES (1, 'A', 'active'), (2, 'P', 'paused');
        INSERT INTO sequence_steps (sequence_id, position, subject, body_text)
        SELECT s, p, 's', 'b' FROM generate_series(1, 2) s, generate_series(1, 2) p;
    """)
    n = len(cases)
    ids = list(range(1, n + 1))
    await pool.execute(
        """INSERT INTO leads (id, sequence_id, sender_id, email)
           SELECT i, s, 1, 'l' || i || '@x.test' FROM unnest($1::bigint[], $2::bigint[]) AS x(i, s)""",
        ids,
        [1 if c.sequence_active else 2 for c in cases],
    )
    await pool.execute(
        """UPDATE leads l SET status = x.status, current_step = x.step, attempt = x.attempt
           FROM unnest($1::bigint[], $2::text[], $3::int[], $4::int[]) AS x(id, status, step, attempt)
           WHERE l.id = x.id""",
        ids,
        [c.lead_status for c in cases],
        [1 if c.on_step else 2 for c in cases],
        [1 if c.on_attempt else 2 for c in cases],
    )
    await pool.execute(
        "INSERT INTO suppressions (email) SELECT 'l' || i || '@x.test' FROM unnest($1::bigint[]) i",
        [i for i, c in zip(ids, cases, strict=True) if c.suppressed],
    )
    with_delivery = [(i, c.delivery) for i, c in zip(ids, cases, strict=True) if c.delivery]
    await pool.execute(
        """INSERT INTO deliveries (lead_id, step, sender_id, message_id, subject, status,
                                   attempts, lease_until)
           SELECT x.id, 1, 1, '<' || x.id || '.1@acme.test>', 's', split_part(x.d, '_', 1), 1,
                  CASE x.d WHEN 'sending_live' THEN $3::timestamptz + interval '5 minutes'
                           WHEN 'sending_expired' THEN $3::timestamptz - interval '5 minutes' END
           FROM unnest($1::bigint[], $2::text[]) AS x(id, d)""",
        [i for i, _ in with_delivery],
        [d for _, d in with_delivery],
        NOW,
    )


async def test_the_one_call_claim_agrees_with_the_gate(pool: asyncpg.Pool) -> None:
    assert len(CASES) == 7168
    for start in range(0, len(CASES), 1000):
        cases = CASES[start : start + 1000]
        await _load(pool, cases)
        items = [Incoming(_job(i + 1, c), i + 1, False) for i, c in enumerate(cases)]
        todo = [
            deliveries.ToClaim(it.job, it.outbox_id, uuid.uuid4(), reclaim=False) for it in items
        ]
        async with pool.acquire() as conn:
            won = await deliveries.claim_plain(conn, todo, NOW, 300)
        claims = {
            i: (t.token, won[t.job.lead_id]) for i, t in enumerate(todo) if t.job.lead_id in won
        }
        expected = {
            i for i, (it, c) in enumerate(zip(items, cases, strict=True)) if _gate_sends(it.job, c)
        }
        assert set(claims) == expected, [cases[i] for i in set(claims) ^ expected][:5]
        rows = {
            r["lead_id"]: r
            for r in await pool.fetch(
                "SELECT lead_id, status, attempts, claim_token FROM deliveries WHERE lead_id = ANY($1)",
                [i + 1 for i in expected],
            )
        }
        for i in expected:
            (token, attempts), row = claims[i], rows[i + 1]
            assert row["status"] == "sending"
            assert row["claim_token"] == token
            # A retry of a deferred delivery counts one more attempt.
            assert attempts == row["attempts"] == (2 if cases[i].delivery else 1)
        # Nothing else moved: the rest still holds what was loaded.
        untouched = await pool.fetchval(
            "SELECT count(*) FROM deliveries WHERE claim_token IS NOT NULL AND NOT lead_id = ANY($1)",
            [i + 1 for i in expected],
        )
        assert untouched == 0


async def test_the_one_call_claim_stays_on_key_lookups_as_the_tables_grow(
    pool: asyncpg.Pool,
) -> None:
    """Its plans are cached (planning it on every call cost more than running it); they
    were made while the tables were empty, and must not scan them once they are full."""
    await _load(pool, [])
    n = 50
    ids = list(range(1, n + 1))
    claim = query("deliveries", "claim_sends")

    async def call(conn: Conn) -> list[asyncpg.Record]:
        return await conn.fetch(
            claim, ids, [1] * n, [1] * n, [1] * n, [f"<{i}@a>" for i in ids], ["s"] * n, ids,
            [uuid.uuid4() for _ in ids], [None] * n, NOW, 300.0,
        )  # fmt: skip

    async with pool.acquire() as conn:
        for _ in range(10):  # enough for a cached plan to settle in
            assert await call(conn) == []
        await conn.execute("""
            INSERT INTO leads (sequence_id, sender_id, email)
            SELECT 1, 1, 'lead' || i || '@example.test' FROM generate_series(1, 20000) i;
            UPDATE leads SET status = 'queued', attempt = 1;
            INSERT INTO deliveries (lead_id, step, message_id, status)
            SELECT id, 2, '<' || id || '@example.test>', 'sent' FROM leads""")

        async def claimed_all() -> None:
            assert len(await call(conn)) == n

        plans = await nested_plans(conn, claimed_all)
    assert "on deliveries" in plans
    assert "on leads" in plans
    assert "Seq Scan" not in plans, plans


# Sender states of the whole claim: each case gets a sender of its own in one of these.
PACED = {
    "unpaced": ("NULL", "NULL", "NULL", 0, None, 0, True),
    "gap_free": ("NULL", "NULL", "NULL", 60, -120, 0, True),  # last gap ended 2 min ago
    "gap_busy": ("NULL", "NULL", "NULL", 60, 50, 0, False),  # gap ends in 50 s
    "hour_full": ("5", "NULL", "NULL", 0, None, 5, False),  # 5 of 5 in the last hour
    "hour_room": ("5", "NULL", "NULL", 0, None, 4, True),
    "day_full": ("NULL", "3", "NULL", 0, None, 3, False),
    "new_full": ("NULL", "NULL", "2", 0, None, 2, None),  # full for first touches only
    "missing": None,
}


async def test_the_whole_claim_agrees_with_the_gate_and_the_pacing_rules(
    pool: asyncpg.Pool,
) -> None:
    states = list(PACED)
    cases = [
        (c, state, first)
        for c in CASES
        if c.sender_id == 1
        for state in states
        for first in (True, False)
        if state == "new_full" or first
    ]
    for start in range(0, len(cases), 1000):
        chunk = cases[start : start + 1000]
        await _load(pool, [c for c, _, _ in chunk])
        await pool.execute("TRUNCATE sender_sends; DELETE FROM senders WHERE id > 3")
        items, senders = [], []
        for i, (c, state, first) in enumerate(chunk):
            sender_id = i + 1 + 1000
            if (spec := PACED[state]) is not None:
                senders.append((sender_id, *spec[:6]))
            job = _job(i + 1, c).model_copy(update={"sender_id": sender_id, "first_touch": first})
            items.append(Incoming(job, i + 1, False))
        await pool.executemany(
            """INSERT INTO senders (id, email, hourly_limit, daily_limit, daily_new_limit,
                                    min_gap_seconds, next_send_at)
               VALUES ($1::bigint, 's' || $1::bigint || '@acme.test', $2::text::int,
                       $3::text::int, $4::text::int, $5,
                       $7::timestamptz + make_interval(secs => $6::float8))
            """,
            [
                (
                    sid,
                    None if h == "NULL" else h,
                    None if d == "NULL" else d,
                    None if n == "NULL" else n,
                    gap,
                    float(end or -1),
                    NOW,
                )
                for sid, h, d, n, gap, end, _ in senders
            ],
        )
        await pool.execute(
            """INSERT INTO sender_sends (sender_id, at, first_touch)
               SELECT x.id, $3::timestamptz - interval '10 minutes', true
               FROM unnest($1::bigint[], $2::int[]) AS x(id, n), generate_series(1, x.n)""",
            [sid for sid, *_ in senders],
            [row[6] for row in senders],
            NOW,
        )
        claims = await claim_all(pool, items, NOW)
        for (c, state, first), it, claim in zip(chunk, items, claims, strict=True):
            decision = _decision(it.job, c, sender_exists=state != "missing")
            spec = PACED[state]
            free = spec is None or spec[6] is True or (spec[6] is None and not first)
            if isinstance(decision, gate.Send):
                if free:
                    assert claim.send, (c, state, first)
                    assert (claim.not_before is not None) == (state not in ("unpaced", "missing"))
                else:
                    assert (claim.send, claim.reason) == (False, "pacing"), (c, state, first)
            else:
                assert not claim.send, (c, state, first, decision)
                assert claim.reason == _reason(decision), (c, state, decision, claim)
        booked = await pool.fetchval("SELECT count(*) FROM sender_sends WHERE at >= $1", NOW)
        assert booked == sum(
            1
            for cl, (_, state, _) in zip(claims, chunk, strict=True)
            if cl.send and state not in ("unpaced", "missing")
        )


def _decision(job: SendJob, case: Case, sender_exists: bool) -> gate.Gate:
    lead = gate.LeadState(
        status=case.lead_status,
        current_step=1 if case.on_step else 2,
        attempt=1 if case.on_attempt else 2,
        sequence_status="active" if case.sequence_active else "paused",
        suppressed=case.suppressed,
        sender_exists=sender_exists,
    )
    delivery = None
    if case.delivery is not None:
        status = case.delivery.split("_")[0]
        lease = NOW + timedelta(minutes=5 if case.delivery == "sending_live" else -5)
        delivery = gate.DeliveryState(status, lease if status == "sending" else None)
    return gate.decide(job, lead, delivery, now=NOW, redelivered=False, policy=AmbiguousPolicy.SKIP)


def _reason(decision: gate.Gate) -> str:
    match decision:
        case gate.Drop(reason) | gate.Requeue(_, reason) | gate.StopLead(reason):
            return reason
        case gate.Settle(status):
            return f"already_{status}"
        case gate.Ambiguous():
            return "ambiguous"
    raise AssertionError(decision)
