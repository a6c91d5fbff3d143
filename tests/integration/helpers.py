"""Shared setup for integration tests: data loading and an in-process pipeline."""

from __future__ import annotations

import asyncio
import random
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
from aio_pika.abc import AbstractRobustConnection

from broker.topology import Names, Topology, connect, declare
from core.gate import AmbiguousPolicy
from db.migrate import FUNCTIONS_DIR, MIGRATIONS_DIR, migrate
from db.pool import Conn, create_pool
from pump.loop import Pump
from runtime.settings import PumpSettings, SchedulerSettings, WorkerSettings
from scheduler.loop import Scheduler
from tests.conftest import AMQP_URL, MESSAGE_ID_SECRET, _admin, db_url
from worker.claim import Claim, Claimer, Incoming, Rate
from worker.consumer import Worker
from worker.relays import Relays
from worker.signing import Signer
from worker.smtp import SmtpPool


@asynccontextmanager
async def fresh_and_older(
    tmp_path: Path, below: int, functions: Path = FUNCTIONS_DIR
) -> AsyncIterator[tuple[str, str]]:
    """Two new databases (dropped after): one migrated to now, one only by the migrations
    numbered below `below` and the function files of `functions`; their URLs."""
    old = tmp_path / "migrations"
    old.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:4]) < below:
            shutil.copy(path, old)
    names = [f"es_fresh_{uuid.uuid4().hex[:8]}", f"es_upgraded_{uuid.uuid4().hex[:8]}"]
    for name in names:
        await _admin(f'CREATE DATABASE "{name}"')
    try:
        fresh, older = (db_url(n) for n in names)
        await migrate(fresh)
        await migrate(older, old, functions)
        yield fresh, older
    finally:
        for name in names:
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


ONE_STEP = """
    INSERT INTO senders (email, name) VALUES ('sales@acme.test', 'Ana');
    INSERT INTO sequences (name, timezone) VALUES ('S', 'UTC');
    INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
    VALUES (1, 1, 0, 'Hi {{ first_name }}', 'Hello');
"""


async def nested_plans(conn: Conn, call: Callable[[], Awaitable[object]]) -> str:
    """Run `call()` on `conn` and return the plan of every statement it ran, nested ones
    (inside database functions) included, as auto_explain prints them."""
    notices: list[str] = []

    def keep(_conn: object, message: asyncpg.PostgresLogMessage) -> None:
        notices.append(str(message.message))

    conn.add_log_listener(keep)
    await conn.execute("""LOAD 'auto_explain';
        SET auto_explain.log_min_duration = 0;
        SET auto_explain.log_nested_statements = on;
        SET auto_explain.log_level = 'notice'""")
    try:
        await call()
    finally:
        conn.remove_log_listener(keep)  # before the connection goes back to the pool
        await conn.execute("RESET ALL")
    return "\n".join(notices)


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
        "message_id_secret": MESSAGE_ID_SECRET,
        **extra,
    }


@asynccontextmanager
async def pipeline(
    pool: asyncpg.Pool,
    env: dict[str, object],
    *,
    smtp: Callable[[WorkerSettings], SmtpPool | Relays] | None = None,
    signer: Signer | None = None,
) -> AsyncIterator[Pipeline]:
    """The three stages in this process: a scheduler, a pump and a worker (sending through
    `smtp(settings)`, by default one pool to the relay; signing with `signer`)."""
    conn = await connect(AMQP_URL, name="test")
    try:
        ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
        topo = await declare(ch, Names.from_prefix(str(env["amqp_prefix"])))
        ws = WorkerSettings.model_validate(env)
        relay = smtp(ws) if smtp is not None else SmtpPool(ws, ws.worker_concurrency)
        yield Pipeline(
            scheduler=Scheduler(pool, SchedulerSettings.model_validate(env)),
            pump=Pump(pool, topo.exchange, PumpSettings.model_validate(env)),
            worker=Worker(pool, relay, ws, signer=signer),
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


@asynccontextmanager
async def replicas(
    env: dict[str, object], *, schedulers: int = 2, pumps: int = 1, workers: int = 2
) -> AsyncIterator[None]:
    """The daemons' own `run` loops as replicas in this process, each with its own pool
    and broker channel, as separate processes would have them; stopped on exit."""
    stop = asyncio.Event()
    opened: list[asyncpg.Pool] = []
    smtps: list[SmtpPool] = []
    conn = await connect(AMQP_URL, name="test-replicas")
    names = Names.from_prefix(str(env["amqp_prefix"]))

    async def own_pool() -> asyncpg.Pool:
        p = await create_pool(str(env["database_url"]), max_size=5)
        opened.append(p)
        return p

    tasks: list[asyncio.Task[None]] = []
    try:
        ss = SchedulerSettings.model_validate(env)
        for _ in range(schedulers):
            tasks.append(asyncio.create_task(Scheduler(await own_pool(), ss).run(stop)))
        ps = PumpSettings.model_validate(env)
        for _ in range(pumps):
            ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
            topo = await declare(ch, names)
            tasks.append(asyncio.create_task(Pump(await own_pool(), topo.exchange, ps).run(stop)))
        ws = WorkerSettings.model_validate(env)
        for _ in range(workers):
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=ws.prefetch)
            topo = await declare(ch, names)
            smtps.append(SmtpPool(ws, ws.worker_concurrency))
            worker = Worker(await own_pool(), smtps[-1], ws)
            tasks.append(asyncio.create_task(worker.run(topo.queue, stop)))
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for s in smtps:
            await s.close()
        for p in opened:
            await p.close()
        await conn.close()


async def claim_all(pool: asyncpg.Pool, items: list[Incoming], now: datetime) -> list[Claim]:
    """The worker's claim of `items` at `now` (no global rate, skip policy, seeded jitter)."""
    claimer = Claimer(
        pool,
        clock=lambda: now,
        policy=AmbiguousPolicy.SKIP,
        lease_seconds=300,
        rng=random.Random(1),
        rate=Rate(),
    )

    async def once(step: Callable[[], Awaitable[object]]) -> object:
        return await step()

    return await claimer.claim(items, once)
