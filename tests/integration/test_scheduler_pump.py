"""Scheduler and pump against real PostgreSQL and RabbitMQ, with time injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aio_pika
import asyncpg
import pytest

from broker.topology import Names, connect, declare
from pump.loop import PublishFailed, Pump
from runtime.settings import PumpSettings, SchedulerSettings
from scheduler.loop import Scheduler
from tests.conftest import AMQP_URL, MESSAGE_ID_SECRET

# Monday 2026-11-23 06:00 UTC = 01:00 in New York: outside 09:00-17:00.
MONDAY_6 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def scheduler(pool: asyncpg.Pool, database: str, **kw: object) -> Scheduler:
    return Scheduler(
        pool,
        SchedulerSettings.model_validate(
            {"database_url": database, "message_id_secret": MESSAGE_ID_SECRET, **kw}
        ),
    )


async def test_window_deferral_in_lead_timezone(pool: asyncpg.Pool, database: str) -> None:
    await pool.execute("""
        INSERT INTO senders (email) VALUES ('s@acme.test');
        INSERT INTO sequences (name, timezone, send_days, send_from, send_until)
        VALUES ('W', 'Europe/Berlin', '{1,2,3,4,5}', '09:00', '17:00');
        INSERT INTO sequence_steps (sequence_id, position, subject, body_text) VALUES (1, 1, 's', 'b');
        INSERT INTO leads (sequence_id, sender_id, email, timezone, next_run_at) VALUES
            (1, 1, 'ny@example.test', 'America/New_York', '2026-11-23 05:00+00'),
            (1, 1, 'berlin@example.test', NULL, '2026-11-23 05:00+00');
    """)
    s = scheduler(pool, database)
    result = await s.run_once(now=MONDAY_6)
    assert result.outcomes == {"deferred": 2}
    due = {
        r["email"]: r["next_run_at"]
        for r in await pool.fetch("SELECT email, next_run_at FROM leads")
    }
    assert due["ny@example.test"] == datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # 09:00 EST
    assert due["berlin@example.test"] == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # 09:00 CET
    # Not yet due: nothing happens. At 08:00 UTC Berlin opens and only that lead is queued.
    assert (await s.run_once(now=MONDAY_6 + timedelta(hours=1))).claimed == 0
    result = await s.run_once(now=datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    assert result.outcomes == {"queued": 1}
    payload = await pool.fetchval("SELECT payload FROM outbox")
    assert payload["to_address"] == "berlin@example.test"
    assert payload["not_after"].startswith("2026-11-23T16:00:00")  # 17:00 CET


async def test_sender_assignment_prefers_free_capacity(pool: asyncpg.Pool, database: str) -> None:
    await pool.execute("""
        INSERT INTO senders (email, daily_limit) VALUES ('busy@acme.test', 10), ('free@acme.test', 10);
        INSERT INTO sender_sends (sender_id, at) SELECT 1, now() FROM generate_series(1, 8);
        INSERT INTO sequences (name) VALUES ('S');
        INSERT INTO sequence_senders VALUES (1, 1), (1, 2);
        INSERT INTO sequence_steps (sequence_id, position, subject, body_text) VALUES (1, 1, 's', 'b');
        INSERT INTO leads (sequence_id, email) SELECT 1, 'l' || i || '@example.test' FROM generate_series(1, 9) i;
    """)
    await scheduler(pool, database).run_once()
    counts = {
        r["sender_id"]: r["n"]
        for r in await pool.fetch("SELECT sender_id, count(*) AS n FROM leads GROUP BY sender_id")
    }
    # free has 10 room, busy 2: free takes leads until both have equal room, then they alternate.
    assert counts == {2: 8, 1: 1}
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 9


async def test_rescuer_requeues_only_lost_messages(pool: asyncpg.Pool, database: str) -> None:
    await pool.execute("""
        INSERT INTO senders (email) VALUES ('s@acme.test');
        INSERT INTO sequences (name) VALUES ('S');
        INSERT INTO sequence_steps (sequence_id, position, subject, body_text) VALUES (1, 1, 's', 'b');
        INSERT INTO leads (sequence_id, sender_id, email)
        SELECT 1, 1, 'l' || i || '@example.test' FROM generate_series(1, 3) i;
    """)
    s = scheduler(pool, database, rescue_after_seconds=60)
    now = datetime.now(UTC)
    await s.run_once(now=now)
    # Lead 1: published, message lost. Lead 2: still unpublished. Lead 3: a live claim.
    await pool.execute("UPDATE outbox SET published_at = now() WHERE lead_id IN (1, 3)")
    await pool.execute("""INSERT INTO deliveries (lead_id, step, message_id, status, lease_until)
                          VALUES (3, 1, '<m@x>', 'sending', now() + interval '1 day')""")
    later = now + timedelta(minutes=5)
    assert await s.rescue_once(now=later) == 1
    assert await s.rescue_once(now=later) == 0
    result = await s.run_once(now=later)
    assert result.outcomes == {"queued": 1}
    rows = await pool.fetch("SELECT lead_id, attempt FROM outbox ORDER BY id")
    assert [tuple(r) for r in rows] == [(1, 1), (2, 1), (3, 1), (1, 2)]


async def _unpublished(pool: asyncpg.Pool, n: int) -> None:
    """`n` leads, each with one unpublished outbox row (ids 1..n)."""
    await pool.execute(
        """INSERT INTO senders (email) VALUES ('s@acme.test');
           INSERT INTO sequences (name) VALUES ('S');"""
    )
    await pool.execute(
        """INSERT INTO leads (sequence_id, sender_id, email)
           SELECT 1, 1, 'l' || i || '@x.test' FROM generate_series(1, $1::int) i""",
        n,
    )
    await pool.execute(
        """INSERT INTO outbox (lead_id, step, attempt, payload)
           SELECT id, 1, 1, '{"k": 1}' FROM leads ORDER BY id"""
    )


async def test_pump_publishes_confirmed_rows_and_prunes_old_ones(
    pool: asyncpg.Pool, database: str, amqp_prefix: str
) -> None:
    await _unpublished(pool, 5)
    env = {
        "database_url": database,
        "amqp_url": AMQP_URL,
        "amqp_prefix": amqp_prefix,
        "pump_batch_size": 2,
        "outbox_retention_hours": 1,
        "outbox_prune_batch": 2,
    }
    conn = await connect(AMQP_URL, name="test")
    try:
        ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
        topo = await declare(ch, Names.from_prefix(amqp_prefix))
        pump = Pump(pool, topo.exchange, PumpSettings.model_validate(env))
        assert [await pump.run_once() for _ in range(4)] == [2, 2, 1, 0]
        got = [await topo.queue.get(timeout=5) for _ in range(5)]
        assert [m.message_id for m in got] == ["1", "2", "3", "4", "5"]
        assert all(m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT for m in got)
        await pool.execute(
            "UPDATE outbox SET published_at = now() - interval '2 hours' WHERE id <= 3"
        )
        assert await pump.prune_once() == 3
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 2

        # An exchange with no bound queue: the broker returns the message, the row stays.
        lonely = await ch.declare_exchange(f"{amqp_prefix}.lonely", auto_delete=True)
        await pool.execute(
            "INSERT INTO outbox (lead_id, step, attempt, payload) VALUES (1, 1, 2, '{}')"
        )
        with pytest.raises(PublishFailed):
            await Pump(pool, lonely, PumpSettings.model_validate(env)).run_once()
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 1
    finally:
        await conn.close()


async def test_a_batch_published_over_several_channels_arrives_whole(
    pool: asyncpg.Pool, database: str, amqp_prefix: str
) -> None:
    await _unpublished(pool, 50)
    env = {"database_url": database, "amqp_url": AMQP_URL, "amqp_prefix": amqp_prefix}
    conn = await connect(AMQP_URL, name="test")
    try:
        names = Names.from_prefix(amqp_prefix)
        channels = [await conn.channel(publisher_confirms=True) for _ in range(3)]
        topo = await declare(channels[0], names)
        exchanges = [topo.exchange] + [
            await ch.get_exchange(names.exchange, ensure=False) for ch in channels[1:]
        ]
        pump = Pump(pool, exchanges, PumpSettings.model_validate(env))
        assert await pump.run_once() == 50
        got = [await topo.queue.get(timeout=5) for _ in range(50)]
        assert sorted(int(m.message_id or 0) for m in got) == list(range(1, 51))
        assert await topo.queue.get(fail=False, timeout=1) is None  # each row once
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
    finally:
        await conn.close()
