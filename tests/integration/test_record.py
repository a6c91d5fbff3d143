"""Recording finished sends: one database call locks, finishes, advances and logs events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from core.schemas import SendJob
from db import deliveries
from db.deliveries import Finished
from db.events import Event
from db.queries import query
from tests.integration.helpers import claim_all, load_one_step, nested_plans, pipeline, settings_env
from tests.smtp_server import SmtpServer
from worker.claim import Incoming


async def _claimed(pool: asyncpg.Pool, now: datetime) -> list[tuple[SendJob, uuid.UUID]]:
    rows = await pool.fetch("SELECT id, payload FROM outbox ORDER BY lead_id")
    items = [Incoming(SendJob.model_validate(r["payload"]), r["id"], False) for r in rows]
    claims = await claim_all(pool, items, now)
    out = []
    for it, c in zip(items, claims, strict=True):
        assert c is not None
        assert c.send
        assert c.token is not None
        out.append((it.job, c.token))
    return out


async def test_a_batch_records_each_outcome_and_returns_the_events_it_wrote(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer
) -> None:
    await load_one_step(pool, "ann@example.test", "bob@example.test", "cy@example.test")
    # Bob's sequence has a second step an hour later; the others end after the first.
    await pool.execute("""INSERT INTO sequences (name) VALUES ('Two');
        INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
        VALUES (2, 1, 0, 'Hi', 'Hello'), (2, 2, 3600, NULL, 'Again');
        UPDATE leads SET sequence_id = 2 WHERE email = 'bob@example.test'""")
    now = datetime.now(UTC) + timedelta(seconds=5)
    async with pipeline(pool, settings_env(database, amqp_prefix, smtp.port)) as p:
        await p.scheduler.run_once(now)
    (ann, ann_token), (bob, bob_token), (cy, _) = await _claimed(pool, now)
    done = await deliveries.record_finished(
        pool,
        [
            Finished(ann, ann_token, "unknown", error="x" * 600),
            Finished(bob, bob_token, "sent", smtp_code=250),
            Finished(cy, uuid.uuid4(), "sent", smtp_code=250),  # not the holder of the claim
        ],
        now=now,
    )
    at = now + timedelta(hours=1)
    assert done == [
        [
            Event(
                ann.lead_id,
                1,
                "send_ambiguous",
                {"message_id": ann.message_id, "error": "x" * 500, "attempts": 1},
            ),
            Event(ann.lead_id, 1, "completed", {}),
        ],
        [
            Event(
                bob.lead_id,
                1,
                "sent",
                {"message_id": bob.message_id, "smtp_code": 250, "attempts": 1},
            ),
            Event(bob.lead_id, 2, "scheduled", {"next_run_at": at.isoformat()}),
        ],
        None,
    ]
    # The database holds exactly those events, in that order, and the matching state.
    written = await pool.fetch(
        "SELECT lead_id, step, type, data, at FROM events WHERE type <> 'queued' ORDER BY id"
    )
    assert [(r["lead_id"], r["step"], r["type"], r["data"]) for r in written] == [
        (e.lead_id, e.step, e.type, e.data) for evs in done if evs for e in evs
    ]
    assert {r["at"] for r in written} == {now}
    state = {
        r["email"]: tuple(r)[1:]
        for r in await pool.fetch("""SELECT l.email, l.status, l.current_step, l.next_run_at,
                                            d.status, d.error IS NOT NULL, d.lease_until
                                     FROM leads l JOIN deliveries d ON d.lead_id = l.id""")
    }
    assert state["ann@example.test"][:2] == ("completed", 1)
    assert state["ann@example.test"][3:] == ("unknown", True, None)
    assert state["bob@example.test"] == ("active", 2, at, "sent", False, None)
    assert state["cy@example.test"][:2] == ("queued", 1)
    assert state["cy@example.test"][3] == "sending"  # still the real holder's to finish


async def test_recording_stays_on_key_lookups_as_the_tables_grow(pool: asyncpg.Pool) -> None:
    """Plans made while the tables were empty are not kept once they hold 20,000 rows.

    A cached plan for the batch update once scanned all of `deliveries` for each row of
    each batch; every plan inside the call is printed here (auto_explain) and checked.
    """
    await load_one_step(pool)
    record = query("deliveries", "record_finished")
    n = 50
    ids = list(range(1, n + 1))
    args = (ids, [1] * n, [uuid.uuid4()] * n, ["sent"] * n, [250] * n, [None] * n, ["<a@b>"] * n)
    async with pool.acquire() as conn:
        for _ in range(10):  # enough for a cached plan to settle in
            assert await conn.fetch(record, *args, datetime.now(UTC)) == []
        await conn.execute("""
            INSERT INTO leads (sequence_id, sender_id, email)
            SELECT 1, 1, 'lead' || i || '@example.test' FROM generate_series(1, 20000) i;
            INSERT INTO deliveries (lead_id, step, message_id, status)
            SELECT id, 1, '<' || id || '@example.test>', 'sent' FROM leads""")

        async def recorded_none() -> None:
            assert await conn.fetch(record, *args, datetime.now(UTC)) == []

        plans = await nested_plans(conn, recorded_none)
    assert "on deliveries" in plans
    assert "on leads" in plans
    assert "Seq Scan" not in plans, plans


async def test_times_in_events_read_as_python_writes_them(pool: asyncpg.Pool) -> None:
    for micro in (0, 4990, 500000, 123456, 1):
        t = datetime(2026, 11, 24, 21, 9, 32, micro, tzinfo=UTC)
        assert await pool.fetchval("SELECT iso_utc($1)", t) == t.isoformat()
