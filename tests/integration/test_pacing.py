"""Pacing across replicas: the database arbitrates, whatever the number of schedulers and workers.

The scheduler-only tests inject time; the replica tests run two schedulers, a pump and two
workers (each with its own pool and channel) in real time and measure at the SMTP server.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import asyncpg

from core import pacing
from db import ledger
from runtime.settings import SchedulerSettings
from scheduler.loop import Scheduler
from tests.conftest import MESSAGE_ID_SECRET, wait_for
from tests.integration.helpers import replicas, settings_env
from tests.smtp_server import SmtpServer

T = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TWO_STEPS = """
    INSERT INTO sequences (name) VALUES ('S');
    INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
    VALUES (1, 1, 0, 'Hi', 'one'), (1, 2, 0, NULL, 'two');
"""


def scheduler(pool: asyncpg.Pool, database: str, **kw: object) -> Scheduler:
    return Scheduler(
        pool,
        SchedulerSettings.model_validate(
            {"database_url": database, "message_id_secret": MESSAGE_ID_SECRET, **kw}
        ),
    )


async def _due(pool: asyncpg.Pool) -> dict[str, tuple[str, datetime]]:
    rows = await pool.fetch("SELECT email, status, next_run_at FROM leads")
    return {r["email"]: (r["status"], r["next_run_at"]) for r in rows}


async def test_follow_ups_take_scarce_slots_before_first_touches(
    pool: asyncpg.Pool, database: str
) -> None:
    await pool.execute(
        TWO_STEPS
        + """
        INSERT INTO senders (email, min_gap_seconds, daily_new_limit) VALUES ('s@acme.test', 60, 2);
        -- One first touch went an hour ago: one more is allowed today.
        INSERT INTO sender_sends (sender_id, at, first_touch) VALUES (1, '2026-11-23 11:00+00', true);
    """
    )
    await pool.execute(
        """
        INSERT INTO leads (sequence_id, sender_id, email, next_run_at) VALUES
            (1, 1, 'old-new@example.test', '2026-11-23 11:50+00'),
            (1, 1, 'new@example.test', '2026-11-23 11:55+00');
        INSERT INTO leads (sequence_id, sender_id, email, next_run_at)
        VALUES (1, 1, 'followup@example.test', '2026-11-23 11:59+00');
        UPDATE leads SET current_step = 2, last_sent_at = '2026-11-21 12:00+00' WHERE id = 3;
        INSERT INTO deliveries (lead_id, step, sender_id, message_id, subject, status, sent_at)
        VALUES (3, 1, 1, '<m1@acme.test>', 'Hi', 'sent', '2026-11-21 12:00+00');
        """
    )
    result = await scheduler(pool, database).run_once(now=T)
    assert result.outcomes == {"queued": 1, "deferred": 2}
    due = await _due(pool)
    # Due last, but a follow-up: it takes the one free slot.
    assert due["followup@example.test"][0] == "queued"
    # The oldest first touch gets the next slot, one gap later.
    assert due["old-new@example.test"] == ("active", T + timedelta(seconds=60))
    # The second would be the third first touch today: it waits for the hour-old one to age out.
    assert due["new@example.test"] == ("active", T - timedelta(hours=1) + timedelta(days=1))
    reasons = await pool.fetch(
        "SELECT data->>'reason' AS reason FROM events WHERE type = 'deferred' ORDER BY lead_id"
    )
    assert [r["reason"] for r in reasons] == ["pacing", "pacing"]


async def test_a_claimed_message_takes_its_booked_slot_once(
    pool: asyncpg.Pool, database: str
) -> None:
    # One lead is claimed by a worker: its hand-off is booked at T+5 s (ledger and
    # next_send_at), the lead still `queued`. The next lead's slot is one gap after that
    # booking, not two (the claimed lead must not count as booked and in flight at once).
    await pool.execute(
        TWO_STEPS
        + """
        INSERT INTO senders (email, min_gap_seconds, next_send_at)
        VALUES ('s@acme.test', 60, '2026-11-23 12:01:05+00');
        INSERT INTO sender_sends (sender_id, at, first_touch)
        VALUES (1, '2026-11-23 12:00:05+00', true);
        INSERT INTO leads (sequence_id, sender_id, email) VALUES
            (1, 1, 'claimed@example.test'), (1, 1, 'next@example.test');
        UPDATE leads SET status = 'queued', next_run_at = '2026-11-23 11:59+00' WHERE id = 1;
        UPDATE leads SET next_run_at = '2026-11-23 11:59+00' WHERE id = 2;
        INSERT INTO deliveries (lead_id, step, sender_id, message_id, subject, status, lease_until)
        VALUES (1, 1, 1, '<m1@acme.test>', 'Hi', 'sending', '2026-11-23 12:05+00');
        """
    )
    result = await scheduler(pool, database).run_once(now=T)
    assert result.outcomes == {"deferred": 1}
    assert (await _due(pool))["next@example.test"] == ("active", T + timedelta(seconds=65))


async def test_resumed_sequence_is_spread_over_pacing_not_burst(
    pool: asyncpg.Pool, database: str
) -> None:
    await pool.execute(
        TWO_STEPS
        + """
        INSERT INTO senders (email, min_gap_seconds) VALUES ('s@acme.test', 30);
        UPDATE sequences SET status = 'paused';
        INSERT INTO leads (sequence_id, sender_id, email, next_run_at)
        SELECT 1, 1, 'l' || i || '@example.test', '2026-11-23 11:00+00' FROM generate_series(1, 5) i;
    """
    )
    s = scheduler(pool, database)
    assert (await s.run_once(now=T)).claimed == 0  # paused: nothing planned
    await pool.execute("UPDATE sequences SET status = 'active'")
    assert (await s.run_once(now=T)).outcomes == {"queued": 1, "deferred": 4}
    waits = sorted(
        nxt for status, nxt in (await _due(pool)).values() if status == "active" and nxt > T
    )
    assert waits == [T + timedelta(seconds=30 * k) for k in range(1, 5)]
    # The in-flight message keeps its slot: a lead due now goes after it and the others.
    await pool.execute(
        "INSERT INTO leads (sequence_id, sender_id, email, next_run_at)"
        " VALUES (1, 1, 'late@example.test', '2026-11-23 11:59+00')"
    )
    assert (await s.run_once(now=T)).outcomes == {"deferred": 1}
    assert (await _due(pool))["late@example.test"] == ("active", T + timedelta(seconds=150))


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(sorted(times))]


async def test_two_schedulers_and_two_workers_keep_one_senders_gap_and_hourly_cap(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer
) -> None:
    """6 leads, one sender: min gap 1 s and 6 an hour, with 2 sends of the last hour about to
    age out. Measured at the SMTP server: every lead once, no two closer than the gap, and
    the 5th and 6th only once the old sends have left the rolling hour."""
    await pool.execute(
        TWO_STEPS
        + """
        INSERT INTO senders (email, min_gap_seconds, hourly_limit) VALUES ('s@acme.test', 1, 6);
        INSERT INTO sender_sends (sender_id, at) VALUES
            (1, now() - interval '1 hour' + interval '5 seconds'),
            (1, now() - interval '1 hour' + interval '8 seconds');
        DELETE FROM sequence_steps WHERE position = 2;
        INSERT INTO leads (sequence_id, sender_id, email)
        SELECT 1, 1, 'l' || i || '@example.test' FROM generate_series(1, 6) i;
    """
    )
    ledger_before = [r["at"].timestamp() for r in await pool.fetch("SELECT at FROM sender_sends")]
    env = settings_env(
        database, amqp_prefix, smtp.port, scheduler_poll_seconds=0.5, pump_poll_seconds=0.5
    )
    async with replicas(env, schedulers=2, workers=2):
        await wait_for(
            lambda: pool.fetchval("SELECT count(*) = 6 FROM leads WHERE status = 'completed'"),
            timeout=40,
        )
    arrived = [r.at for r in smtp.received]
    assert sorted(r.rcpt_to[0] for r in smtp.received) == sorted(
        f"l{i}@example.test" for i in range(1, 7)
    )
    # The ledger the workers booked under the sender lock: exact gaps.
    ledger = [r["at"].timestamp() for r in await pool.fetch("SELECT at FROM sender_sends")]
    print(f"gap 1 s: ledger min {min(_gaps(ledger)):.4f} s, server min {min(_gaps(arrived)):.4f} s")
    assert min(_gaps(ledger)) >= 1.0
    # At the server, less a few milliseconds of network scheduling.
    assert min(_gaps(arrived)) >= 0.9, _gaps(arrived)
    # Rolling hour: the two old sends plus what arrived never exceed 6.
    for t in arrived:
        assert sum(1 for x in ledger_before + arrived if t - 3600 < x <= t) <= 6
    # The 5th and 6th new sends waited for the old sends to leave the hour.
    ledger_before.sort()
    assert sorted(arrived)[4] >= ledger_before[0] + 3600
    assert sorted(arrived)[5] >= ledger_before[1] + 3600
    assert await pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'sent'") == 6


async def test_global_rate_holds_across_workers_and_senders(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer
) -> None:
    await pool.execute(
        TWO_STEPS
        + """
        DELETE FROM sequence_steps WHERE position = 2;
        INSERT INTO senders (email) SELECT 's' || i || '@acme.test' FROM generate_series(1, 3) i;
        INSERT INTO leads (sequence_id, sender_id, email)
        SELECT 1, 1 + i % 3, 'l' || i || '@example.test' FROM generate_series(1, 12) i;
    """
    )
    env = settings_env(
        database,
        amqp_prefix,
        smtp.port,
        scheduler_poll_seconds=0.5,
        pump_poll_seconds=0.5,
        global_rate_per_second=4,
    )
    async with replicas(env, schedulers=2, workers=2):
        await wait_for(
            lambda: pool.fetchval("SELECT count(*) = 12 FROM leads WHERE status = 'completed'"),
            timeout=40,
        )
    arrived = [r.at for r in smtp.received]
    assert len(arrived) == 12
    print(f"rate 4/s: server min gap {min(_gaps(arrived)):.4f} s")
    assert min(_gaps(arrived)) >= 0.25 - 0.1, _gaps(arrived)  # less hand-off jitter
    assert max(arrived) - min(arrived) >= 11 * 0.25 - 0.05


async def test_a_big_import_against_a_slow_sender_defers_each_lead_once(
    pool: asyncpg.Pool, database: str
) -> None:
    """1,000 leads against a sender of 20 an hour, planned in two batches: each waits for a
    forecast slot of its own (the second batch goes around the first's, not onto them) with
    one `deferred` event, and thirty seconds of scheduling add nothing more."""
    await pool.execute(
        TWO_STEPS
        + """
        INSERT INTO senders (email, hourly_limit) VALUES ('s@acme.test', 20);
        INSERT INTO leads (sequence_id, sender_id, email, next_run_at)
        SELECT 1, 1, 'l' || i || '@example.test', '2026-11-23 11:00+00'
        FROM generate_series(1, 1000) i;
    """
    )
    s = scheduler(pool, database)
    for second in range(31):
        await s.run_once(now=T + timedelta(seconds=second))
    per_lead = await pool.fetch(
        "SELECT lead_id, count(*) AS n FROM events WHERE type = 'deferred' GROUP BY lead_id"
    )
    queued = await pool.fetchval("SELECT count(*) FROM events WHERE type = 'queued'")
    assert queued == 20  # the hour's cap, at once
    assert len(per_lead) == 980
    assert max(r["n"] for r in per_lead) == 1
    hours = await pool.fetch(
        "SELECT date_trunc('hour', next_run_at - interval '1 second') AS h, count(*) AS n"
        " FROM leads WHERE status = 'active' GROUP BY 1 ORDER BY 1"
    )
    assert [r["n"] for r in hours] == [20] * 49  # the cap, each hour, for 49 hours


async def test_a_worker_that_waited_for_the_sender_lock_counts_what_the_holder_booked(
    pool: asyncpg.Pool,
) -> None:
    """Two workers book for one capped sender at once: the second waits for the first's
    lock and then sees its hand-offs, so a cap (the sender's or one at a provider) is not
    booked past by both."""
    await pool.execute(
        """INSERT INTO senders (email, daily_limit, provider_caps)
           VALUES ('s@acme.test', 100, '{"yahoo": 3}')"""
    )
    now = datetime.now(UTC)
    async with pool.acquire() as first, pool.acquire() as second:
        tx = first.transaction()
        await tx.start()
        (held,) = (await ledger.lock(first, [1], now)).values()
        assert (held.sends, held.provider_sends) == ([], {"yahoo": []})
        await ledger.record(
            first, [ledger.Booking(1, now, True, "yahoo") for _ in range(3)], {1: now}
        )
        waiting = asyncio.ensure_future(ledger.lock(second, [1], now))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # it waits for the lock
        await tx.commit()
        (seen,) = (await asyncio.wait_for(waiting, 10)).values()
        assert seen.provider_sends == {"yahoo": [now] * 3}
        assert len(seen.sends) == 3
        # The cap of 3 at Yahoo is full: its next slot is a day after the first booking.
        assert pacing.provider_slot(3, seen.provider_sends["yahoo"], now) == now + pacing.DAY
