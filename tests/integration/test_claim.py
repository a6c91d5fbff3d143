"""The one-call claim of plain sends (migration 0004) against the worker's gate: over every
combination of lead, sequence, suppression, delivery, window and sender state, the SQL
claims exactly the messages `gate.decide` would send without a reclaim, for unpaced senders;
everything else is left for the general path."""

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
from db.deliveries import Incoming
from db.queries import query
from tests.integration.helpers import nested_plans

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
    lead = gate.LeadState(
        status=case.lead_status,
        current_step=1 if case.on_step else 2,
        attempt=1 if case.on_attempt else 2,
        sequence_status="active" if case.sequence_active else "paused",
        suppressed=case.suppressed,
    )
    delivery = None
    if case.delivery is not None:
        status = case.delivery.split("_")[0]
        lease = NOW + timedelta(minutes=5 if case.delivery == "sending_live" else -5)
        delivery = gate.DeliveryState(status, lease if status == "sending" else None)
    decision = gate.decide(
        job, lead, delivery, now=NOW, redelivered=False, policy=AmbiguousPolicy.SKIP
    )
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
        claims = await deliveries._claim_sends(pool, items, range(len(items)), NOW, 300)
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
            claim, row = claims[i], rows[i + 1]
            assert row["status"] == "sending"
            assert row["claim_token"] == claim.token
            # A retry of a deferred delivery counts one more attempt.
            assert claim.attempts == row["attempts"] == (2 if cases[i].delivery else 1)
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

    async def call(conn: asyncpg.Connection) -> list[asyncpg.Record]:
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
