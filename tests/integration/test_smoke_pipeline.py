"""The three stages in-process against real PostgreSQL, RabbitMQ and SMTP: one lead, two steps."""

from __future__ import annotations

import asyncio

import asyncpg

from broker.topology import Names, connect, declare
from pump.loop import Pump
from runtime.settings import PumpSettings, SchedulerSettings, WorkerSettings
from scheduler.loop import Scheduler
from tests.conftest import AMQP_URL, wait_for
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
    assert dict(lead) == {"status": "completed", "current_step": 2}
    rows = await pool.fetch("SELECT step, status FROM deliveries ORDER BY step")
    assert [tuple(r) for r in rows] == [(1, "sent"), (2, "sent")]


async def _lead_not_queued(pool: asyncpg.Pool) -> bool:
    return await pool.fetchval("SELECT status FROM leads") != "queued"
