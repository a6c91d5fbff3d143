"""Shared setup for integration tests: data loading and an in-process pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from aio_pika.abc import AbstractRobustConnection

from broker.topology import Names, Topology, connect, declare
from core.settings import PumpSettings, SchedulerSettings, WorkerSettings
from pump.loop import Pump
from scheduler.loop import Scheduler
from tests.conftest import AMQP_URL
from worker.consumer import Worker
from worker.smtp import SmtpPool

ONE_STEP = """
    INSERT INTO senders (email, name) VALUES ('sales@acme.test', 'Ana');
    INSERT INTO sequences (name, timezone) VALUES ('S', 'UTC');
    INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
    VALUES (1, 1, 0, 'Hi {{ first_name }}', 'Hello');
"""


async def load_one_step(pool: asyncpg.Pool, *emails: str) -> None:
    """A one-step sequence with one sender, and a lead per address (first name = local part)."""
    await pool.execute(ONE_STEP)
    await pool.executemany(
        "INSERT INTO leads (sequence_id, sender_id, email, first_name) VALUES (1, 1, $1, $2)",
        [(e, e.split("@")[0].title()) for e in emails],
    )


@dataclass
class Pipeline:
    scheduler: Scheduler
    pump: Pump
    worker: Worker
    topology: Topology
    connection: AbstractRobustConnection


def settings_env(database: str, prefix: str, smtp_port: int, **extra: object) -> dict[str, object]:
    return {
        "database_url": database,
        "amqp_url": AMQP_URL,
        "amqp_prefix": prefix,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        **extra,
    }


@asynccontextmanager
async def pipeline(pool: asyncpg.Pool, env: dict[str, object]) -> AsyncIterator[Pipeline]:
    conn = await connect(AMQP_URL, name="test")
    try:
        ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
        topo = await declare(ch, Names.from_prefix(str(env["amqp_prefix"])))
        ws = WorkerSettings.model_validate(env)
        yield Pipeline(
            scheduler=Scheduler(pool, SchedulerSettings.model_validate(env)),
            pump=Pump(pool, topo.exchange, PumpSettings.model_validate(env)),
            worker=Worker(pool, SmtpPool(ws, ws.worker_concurrency), ws),
            topology=topo,
            connection=conn,
        )
    finally:
        await conn.close()


@asynccontextmanager
async def consuming(p: Pipeline) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(p.worker.consume(p.topology.queue, stop))
    try:
        yield
    finally:
        stop.set()
        await task
