"""`ops/status.py` against a real database and broker: the maintained counts agree with a
full count after any mix of writes and folds (also concurrent ones), paused sequences are
not lag, senders show their use against caps and next free slot, replicas report and leave,
queue depths come from the broker (None when it is away)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import timedelta
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from broker.topology import Names, declare
from core.clock import utcnow
from db import counts, replicas
from db.pool import Conn
from ops import status
from runtime.health import Heartbeat
from runtime.settings import HealthSettings
from tests.conftest import AMQP_URL

SETUP = """
    INSERT INTO senders (email, hourly_limit, daily_limit) VALUES ('paced@acme.test', 2, 10);
    INSERT INTO senders (email) VALUES ('free@acme.test');
    INSERT INTO sequences (name) VALUES ('One'), ('Two');
    INSERT INTO sequence_steps (sequence_id, position, subject, body_text)
    VALUES (1, 1, 's', 'b'), (2, 1, 's', 'b');
"""
STATUSES = ["active", "queued", "paused", "completed", "stopped", "failed"]


async def _truth(conn: Conn) -> dict[tuple[int, str], int]:
    rows = await conn.fetch("SELECT sequence_id, status, count(*) AS n FROM leads GROUP BY 1, 2")
    return {(r["sequence_id"], r["status"]): r["n"] for r in rows}


async def _maintained(conn: Conn) -> dict[tuple[int, str], int]:
    view = await status.read(conn, None, utcnow())
    return {(q.id, k): v for q in view.sequences for k, v in q.leads.items() if v}


async def _random_writes(conn: Conn, rng: random.Random, rounds: int) -> None:
    for _ in range(rounds):
        # Writers racing over the same rows may deadlock: that statement changed nothing.
        with contextlib.suppress(asyncpg.DeadlockDetectedError):
            await _random_write(conn, rng)


async def _random_write(conn: Conn, rng: random.Random) -> None:
    op = rng.choice(["insert", "update", "update", "delete", "fold", "move"])
    if op == "insert":
        await conn.execute(
            """INSERT INTO leads (sequence_id, email, status)
               SELECT 1 + (i % 2), 'l' || md5(random()::text) || '@x.test', $2
               FROM generate_series(1, $1) i""",
            rng.randint(1, 30),
            rng.choice(STATUSES),
        )
    elif op == "update":  # some rows change status, others only another column
        await conn.execute(
            "UPDATE leads SET status = $1, updated_at = now() WHERE id % $2 = $3",
            rng.choice(STATUSES),
            rng.randint(2, 5),
            rng.randint(0, 1),
        )
    elif op == "move":
        await conn.execute(
            "UPDATE leads SET sequence_id = 3 - sequence_id WHERE id % 7 = $1",
            rng.randint(0, 6),
        )
    elif op == "delete":
        await conn.execute("DELETE FROM leads WHERE id % 11 = $1", rng.randint(0, 10))
    else:
        await counts.fold(conn, utcnow())


async def test_lead_counts_agree_with_a_full_count_after_any_writes(pool: asyncpg.Pool) -> None:
    await pool.execute(SETUP)
    async with pool.acquire() as conn:
        for seed in range(5):
            await _random_writes(conn, random.Random(seed), 40)
            assert await _maintained(conn) == await _truth(conn), seed
        # Folding leaves one row per key, and no answer changes.
        await counts.fold(conn, utcnow())
        keys = await conn.fetchval(
            "SELECT count(*) = count(DISTINCT (sequence_id, status)) FROM lead_count_changes"
        )
        assert keys is True
        assert await _maintained(conn) == await _truth(conn)


async def test_concurrent_writers_and_folders_lose_no_change(pool: asyncpg.Pool) -> None:
    await pool.execute(SETUP)

    async def writer(seed: int) -> None:
        async with pool.acquire() as conn:
            await _random_writes(conn, random.Random(100 + seed), 60)

    await asyncio.gather(*(writer(i) for i in range(4)))
    async with pool.acquire() as conn:
        assert await _maintained(conn) == await _truth(conn)


async def test_paused_sequences_are_not_lag_and_activity_is_counted(pool: asyncpg.Pool) -> None:
    await pool.execute(SETUP)
    now = utcnow()
    await pool.execute(
        """INSERT INTO leads (sequence_id, sender_id, email, next_run_at)
           SELECT 1 + (i % 2), 2, 'l' || i || '@x.test', $1::timestamptz - make_interval(mins => i)
           FROM generate_series(1, 10) i""",
        now,
    )
    await pool.execute("UPDATE sequences SET status = 'paused' WHERE id = 2")
    await pool.execute(
        """INSERT INTO events (lead_id, step, type, at) VALUES
           (1, 1, 'sent', $1), (3, 1, 'sent', $1),
           (2, 1, 'sent', $1), (5, 1, 'failed', $1 - interval '2 days')""",
        now,
    )
    # A reply and an unsubscribe through the public SQL verbs (what the inbox, the API and
    # the one-click link call): their stops are what the outcomes count.
    assert await pool.fetchval("SELECT record_reply('l3@x.test')") == 1
    assert await pool.fetchval("SELECT record_unsubscribe('l7@x.test')") == 1
    async with pool.acquire() as conn:
        view = await status.read(conn, None, now)
    one, two = view.sequences
    assert (one.leads["active"], two.leads["active"]) == (5, 3)
    # Leads 2, 4, ... are sequence One's; 1, 3, ... the paused Two's.
    assert one.last_24h == {**dict.fromkeys(status.OUTCOMES, 0), "sent": 1}
    assert two.last_24h == {
        **dict.fromkeys(status.OUTCOMES, 0),
        "sent": 2,
        "replied": 1,
        "unsubscribed": 1,
    }
    # Only sequence One's leads (2, 4, ..., 10 minutes late) are due work; the failure of
    # two days ago is not in the last day.
    assert view.pipeline.due == 5
    assert view.pipeline.lag_seconds == pytest.approx(10 * 60, abs=1)
    # A hand-written event of a type the product does not write is refused (one registry).
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("INSERT INTO events (lead_id, step, type) VALUES (3, 1, 'replied')")
    free = next(s for s in view.senders if s.email == "free@acme.test")
    assert (free.sent_last_hour, free.sent_last_day, free.paced) == (3, 3, False)


async def test_a_paced_sender_shows_its_use_and_next_free_slot(pool: asyncpg.Pool) -> None:
    await pool.execute(SETUP)
    now = utcnow()
    await pool.execute(
        """INSERT INTO sender_sends (sender_id, at) VALUES
           (1, $1::timestamptz - interval '50 minutes'), (1, $1::timestamptz - interval '10 minutes'),
           (1, $1::timestamptz - interval '5 hours')""",
        now,
    )
    async with pool.acquire() as conn:
        view = await status.read(conn, None, now)
    paced = view.senders[0]
    assert (paced.sent_last_hour, paced.sent_last_day) == (2, 3)
    assert paced.hourly_limit == 2
    # The hourly cap frees when the send of 50 minutes ago is an hour old.
    assert paced.next_free_slot == now + timedelta(minutes=10)


async def test_replicas_report_and_leave(pool: asyncpg.Pool, tmp_path: Path) -> None:
    beat = Heartbeat("worker", HealthSettings(health_dir=tmp_path), interval=0.05)
    beat.attach(replicas.Roster(pool, beat))
    stop = asyncio.Event()
    task = asyncio.create_task(beat.run(stop))
    try:
        for _ in range(100):
            async with pool.acquire() as conn:
                view = await status.read(conn, None, utcnow())
            if view.pipeline.replicas:
                break
            await asyncio.sleep(0.05)
        (replica,) = view.pipeline.replicas
        assert (replica.service, replica.pid) == ("worker", beat.pid)
    finally:
        stop.set()
        await task
    async with pool.acquire() as conn:
        assert (await status.read(conn, None, utcnow())).pipeline.replicas == []


async def test_queue_depths_come_from_the_broker(amqp_prefix: str) -> None:
    names = Names.from_prefix(amqp_prefix)
    conn = await aio_pika.connect(AMQP_URL)
    try:
        ch = await conn.channel()
        topology = await declare(ch, names)
        for i in range(3):
            await topology.exchange.publish(aio_pika.Message(b"x", message_id=str(i)), "send")
        await ch.default_exchange.publish(aio_pika.Message(b"dead"), names.dead_queue)
    finally:
        await conn.close()
    depths = status.QueueDepths(AMQP_URL, names)
    try:
        for _ in range(50):  # the broker's counts lag its confirms a little
            got = await depths.read()
            if got == (3, 1):
                break
            await asyncio.sleep(0.1)
        assert got == (3, 1)
    finally:
        await depths.close()
    away = status.QueueDepths("amqp://guest:guest@127.0.0.1:1/", names, timeout=1)
    assert await away.read() == (None, None)
    await away.close()
