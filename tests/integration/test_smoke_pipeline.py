"""The three stages in-process against real PostgreSQL, RabbitMQ and SMTP: one lead, two steps."""

from __future__ import annotations

import asyncio

import asyncpg

from broker.topology import Names, connect, declare
from pump.loop import Pump
from runtime.settings import PumpSettings, SchedulerSettings, WorkerSettings
from scheduler.loop import Scheduler
from tests.conftest import AMQP_URL, MESSAGE_ID_SECRET, wait_for
from tests.integration.helpers import consuming, pipeline, settings_env
from tests.smtp_server import SmtpServer
from worker.consumer import Worker
from worker.smtp import SmtpPool


async def test_lead_receives_both_steps(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer
) -> None:
    await pool.execute(
        """
        INSERT INTO senders (email, name) VALUES ('sales@acme.test', 'Ana from Acme');
        INSERT INTO sequences (name, timezone) VALUES ('Onboarding', 'Europe/Berlin');
        INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
        VALUES (1, 1, 0, 'Hi {{ first_name }}', 'Hello {{ first_name }} at {{ company }}'),
               (1, 2, 0, NULL, 'Just following up');
        INSERT INTO leads (sequence_id, sender_id, email, first_name, company)
        VALUES (1, 1, 'bob@example.test', 'Bob', 'Initech');
        """
    )
    env = {
        "database_url": database,
        "amqp_url": AMQP_URL,
        "amqp_prefix": amqp_prefix,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "message_id_secret": MESSAGE_ID_SECRET,
    }
    scheduler = Scheduler(pool, SchedulerSettings.model_validate(env))
    conn = await connect(AMQP_URL, name="test")
    try:
        ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
        topo = await declare(ch, Names.from_prefix(amqp_prefix))
        pump = Pump(pool, topo.exchange, PumpSettings.model_validate(env))
        wsettings = WorkerSettings.model_validate(env)
        worker = Worker(pool, SmtpPool(wsettings, 2), wsettings)
        stop = asyncio.Event()
        consumer = asyncio.create_task(worker.consume(topo.queue, stop))

        for _ in range(2):
            assert (await scheduler.run_once()).outcomes["queued"] == 1
            assert await pump.run_once() == 1
            n = len(smtp.received)
            await wait_for(lambda n=n: len(smtp.received) == n + 1)
            await wait_for(lambda: _lead_not_queued(pool))
        stop.set()
        await consumer
    finally:
        await conn.close()

    first, second = (r.message for r in smtp.received)
    assert first["Subject"] == "Hi Bob"
    assert "Hello Bob at Initech" in first.get_content()
    assert second["Subject"] == "Re: Hi Bob"
    assert second["In-Reply-To"] == first["Message-ID"]
    lead = await pool.fetchrow("SELECT status, current_step FROM leads")
    assert lead is not None
    assert dict(lead) == {"status": "completed", "current_step": 2}
    rows = await pool.fetch("SELECT step, status FROM deliveries ORDER BY step")
    assert [tuple(r) for r in rows] == [(1, "sent"), (2, "sent")]


async def _lead_not_queued(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT status FROM leads") != "queued")


async def test_a_long_thread_with_a_long_subject_reaches_the_end(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer
) -> None:
    """30 replies in one thread (References grows with each), a first subject close to the
    limit and a long domain: every step goes out, folded, and none fails the lead."""
    domain = "mail." + "very-long-subdomain-name." * 6 + "test"
    await pool.execute(f"""
        INSERT INTO senders (email, name) VALUES ('ana@{domain}', 'Ånä Ümlaut-Øster from a Company With a Long Name');
        INSERT INTO sequences (name) VALUES ('Long');
        INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
        SELECT 1, 1, 0, repeat('Grüße ', 149) || 'end', 'first'
        UNION ALL SELECT 1, p, 0, NULL, 'reply ' || p FROM generate_series(2, 30) p;
        INSERT INTO leads (sequence_id, sender_id, email) VALUES (1, 1, 'bob@example.test');
    """)
    async with pipeline(pool, settings_env(database, amqp_prefix, smtp.port)) as p, consuming(p):
        for _ in range(300):
            await p.scheduler.run_once()
            await p.pump.run_once()
            if await pool.fetchval("SELECT status IN ('completed', 'failed') FROM leads"):
                break
            await asyncio.sleep(0.05)
    assert await pool.fetchval("SELECT status FROM leads") == "completed"
    msgs = [r.message for r in smtp.received]
    assert len(msgs) == 30
    first_subject = str(msgs[0]["Subject"])
    assert len(first_subject) == 897
    for k, m in enumerate(msgs[1:], start=1):
        assert str(m["Subject"]) == ("Re: " + first_subject)[:899].rstrip() + "…"
        assert str(m["References"]).split() == [str(x["Message-ID"]) for x in msgs[:k]]
    for r in smtp.received:
        head = r.data.split(b"\r\n\r\n", 1)[0]
        assert max(len(line) for line in head.split(b"\r\n")) <= 998
