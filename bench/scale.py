"""The scheduler's and the pump's cost per row with a large table against a small one."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from pydantic import SecretStr

from api.console import pages
from bench.services import (
    AMQP_URL,
    MESSAGE_ID_SECRET,
    SEQUENCE_SQL,
    database,
    drop_topology,
    tree_cpu,
)
from broker.topology import Names, connect, declare
from db import pool as db_pool
from db.partitions import month_start
from db.pool import create_pool
from db.queries import query
from ops import leads, status
from pump.loop import Pump
from runtime.settings import PumpSettings, SchedulerSettings
from scheduler import planning
from scheduler.loop import Scheduler


async def _explain(conn: asyncpg.Connection, sql: str, *args: object) -> str:
    async with conn.transaction():
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, *args)
        raise _Rollback("\n".join(r[0] for r in rows))


class _Rollback(Exception):
    pass


async def _plan(conn: asyncpg.Connection, sql: str, *args: object) -> str:
    try:
        await _explain(conn, sql, *args)
    except _Rollback as done:
        return str(done)
    raise AssertionError("unreachable")


async def _scheduler_cost(dsn: str, due: int) -> tuple[float, float]:
    """Plan `due` due leads with the scheduler's own code; (wall, CPU) seconds per lead."""
    settings = SchedulerSettings(
        database_url=dsn, amqp_url=AMQP_URL, log_level="WARNING",
        message_id_secret=SecretStr(MESSAGE_ID_SECRET),
    )  # fmt: skip
    pool = await create_pool(dsn, max_size=2)
    try:
        scheduler = Scheduler(pool, settings)
        await planning.start()
        me = os.getpid()
        wall, cpu = time.perf_counter(), tree_cpu(me)
        done = 0
        while done < due:
            done += (await scheduler.run_once()).claimed
        return (time.perf_counter() - wall) / due, (tree_cpu(me) - cpu) / due
    finally:
        await pool.close()


async def _pump_cost(dsn: str, rows: int) -> tuple[float, float]:
    settings = PumpSettings(
        database_url=dsn, amqp_url=AMQP_URL, amqp_prefix=f"es_bench_{uuid.uuid4().hex[:8]}"
    )
    pool = await create_pool(dsn, max_size=2)
    connection = await connect(AMQP_URL, name="bench")
    try:
        channel = await connection.channel(publisher_confirms=True)
        topology = await declare(channel, Names.from_prefix(settings.amqp_prefix))
        pump = Pump(pool, topology.exchange, settings)
        wall, cpu = time.perf_counter(), time.process_time()
        done = 0
        while done < rows:
            done += await pump.run_once()
        return (time.perf_counter() - wall) / rows, (time.process_time() - cpu) / rows
    finally:
        await connection.close()
        await pool.close()
        await drop_topology(settings.amqp_prefix)


DUE = 10_000


async def _status_p95(conn: asyncpg.Connection, calls: int = 60) -> float:
    """p95 of `ops status`'s read (uncached, no broker) in ms, with DUE leads due now."""
    took = []
    for _ in range(calls):
        t0 = time.perf_counter()
        await status.read(conn, None, datetime.now(UTC))
        took.append((time.perf_counter() - t0) * 1000)
    return sorted(took)[int(calls * 0.95) - 1]


async def _overview_p95(conn: asyncpg.Connection, calls: int = 30) -> float:
    """p95 in ms of the console overview's server time: its two reads (uncached, no
    broker) and the page's rendering."""
    template = pages.env.get_template("overview_live.html")
    took = []
    for _ in range(calls):
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        view = await status.read(conn, None, now)
        chart = await status.chart(conn, now)
        template.render(**pages.overview_context(view, chart))
        took.append((time.perf_counter() - t0) * 1000)
    return sorted(took)[int(calls * 0.95) - 1]


async def _timeline_p95(conn: asyncpg.Connection, calls: int = 200) -> float:
    """p95 in ms of a lead's timeline (`ops lead show`'s read) for leads picked at random."""
    top = await conn.fetchval("SELECT max(id) FROM leads")
    took = []
    for i in range(calls):
        t0 = time.perf_counter()
        await leads.show(conn, 1 + (i * 7_919_993) % top)
        took.append((time.perf_counter() - t0) * 1000)
    return sorted(took)[int(calls * 0.95) - 1]


async def _load_events(conn: asyncpg.Connection, n: int) -> None:
    """`n` events over the past 13 months, in their months' partitions, five per lead."""
    now = datetime.now(UTC)
    for back in range(13, 0, -1):  # the months as the pump would have made them
        await conn.execute(
            "SELECT * FROM maintain_event_partitions($1, interval '100 years')",
            month_start(now, -back),
        )
    top = await conn.fetchval("SELECT max(id) FROM leads")
    # Loaded as rows written over 13 months: the counting and webhook triggers are not
    # what is measured, and the foreign key holds by construction.
    await conn.execute("ALTER TABLE events DISABLE TRIGGER ALL")
    step = 1_000_000
    for start in range(0, n, step):
        await conn.execute(
            """INSERT INTO events (lead_id, step, type, at, data)
               SELECT 1 + (i / 5) % $3, i % 5, (ARRAY['queued', 'sent', 'scheduled',
                      'queued', 'sent'])[1 + i % 5],
                      now() - ((i * 7919) % (395 * 86400)) * interval '1 second',
                      '{"message_id": "<x@example.test>"}'
               FROM generate_series($1::bigint, $2::bigint) i""",
            start, min(start + step, n) - 1, top,
        )  # fmt: skip
    await conn.execute("ALTER TABLE events ENABLE TRIGGER ALL")
    await conn.execute("ANALYZE events")


async def _events_point(dsn: str, n: int) -> dict[str, Any]:
    conn = await db_pool.connect(dsn)
    try:
        t0 = time.perf_counter()
        await _load_events(conn, n)
        print(f"--- {n:,} events loaded in {time.perf_counter() - t0:.0f} s")
        plan = await _plan(
            conn, "SELECT id, step, type, at, data FROM events WHERE lead_id = $1 ORDER BY id", 4242
        )
        print("timeline, events of one lead:\n" + plan)
        return {
            "status_p95_ms": await _status_p95(conn),
            "timeline_p95_ms": await _timeline_p95(conn),
        }
    finally:
        await conn.close()


async def _scale_point(dsn: str, future_rows: int) -> dict[str, Any]:
    """Per-row costs with `future_rows` not-yet-due leads and as many published outbox rows."""
    conn = await db_pool.connect(dsn)
    try:
        far = datetime.now(UTC) + timedelta(days=365)
        have = await conn.fetchval("SELECT count(*) FROM leads")
        if future_rows > have:
            # Inserted as not yet due (the enrolment trigger makes a new lead due now).
            await conn.execute("ALTER TABLE leads DISABLE TRIGGER USER")
            step = 1_000_000
            for start in range(have, future_rows, step):
                # With as large a published backlog: what the pump walks past.
                await conn.execute(
                    """WITH future AS (
                           INSERT INTO leads (sequence_id, sender_id, email, first_name, status,
                                              current_step, next_run_at)
                           SELECT 1, 1, 'f' || i || '@example.test', 'F', 'active', 1, $3
                           FROM generate_series($1::bigint, $2::bigint) i
                           RETURNING id)
                       INSERT INTO outbox (lead_id, step, attempt, payload, published_at)
                       SELECT id, 1, 1, '{}'::jsonb, now() - interval '1 hour' FROM future""",
                    start + 1,
                    min(start + step, future_rows),
                    far,
                )
            await conn.execute("ALTER TABLE leads ENABLE TRIGGER USER")
            # The maintained counts, as the disabled triggers would have kept them.
            await conn.execute(
                "INSERT INTO lead_count_changes VALUES (1, 'active', $1)", future_rows - have
            )
            await conn.execute("VACUUM ANALYZE leads")
            await conn.execute("VACUUM ANALYZE outbox")
        # DUE due leads, then the scheduler plans them (one transaction per batch).
        await conn.execute(
            """INSERT INTO leads (sequence_id, sender_id, email, first_name)
               SELECT 1, 1, 'd' || i || '@example.test', 'D' FROM generate_series(1, $1) i""",
            DUE,
        )
        now = datetime.now(UTC)
        status_p95 = await _status_p95(conn)
        overview_p95 = await _overview_p95(conn)
        timeline_p95 = await _timeline_p95(conn)
        # The scheduler's and the pump's own claim statements, as they run.
        plan_claim = await _plan(conn, query("leads", "claim_due_ids"), now, 500)
        sched_wall, sched_cpu = await _scheduler_cost(dsn, DUE)
        plan_pump = await _plan(conn, query("outbox", "claim_unpublished"), 500, datetime.now(UTC))
        pump_wall, pump_cpu = await _pump_cost(dsn, DUE)
        # Leave the table as it was for the next point: the due leads go.
        await conn.execute("DELETE FROM events")
        await conn.execute("DELETE FROM outbox WHERE published_at > now() - interval '30 min'")
        await conn.execute("DELETE FROM leads WHERE email LIKE 'd%'")
        size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('leads'))")
    finally:
        await conn.close()
    return {
        "rows": future_rows,
        "leads_size": size,
        "scheduler_ms_per_lead": sched_wall * 1000,
        "scheduler_cpu_ms_per_lead": sched_cpu * 1000,
        "pump_ms_per_row": pump_wall * 1000,
        "pump_cpu_ms_per_row": pump_cpu * 1000,
        "status_p95_ms": status_p95,
        "overview_p95_ms": overview_p95,
        "timeline_p95_ms": timeline_p95,
        "plan_claim_due": plan_claim,
        "plan_pump_claim": plan_pump,
    }


async def scale(big: int, events: int) -> dict[str, Any]:
    async with database("es_bench_scale") as dsn:
        conn = await db_pool.connect(dsn)
        await conn.execute(SEQUENCE_SQL)
        await conn.close()
        small = await _scale_point(dsn, 10_000)
        large = await _scale_point(dsn, big)
        with_events = await _events_point(dsn, events)
    for point in (small, large):
        print(f"--- plans with {point['rows']:,} not-yet-due leads ({point['leads_size']})")
        print("scheduler, claim_due_ids:\n" + point.pop("plan_claim_due"))
        print("pump, claim_unpublished:\n" + point.pop("plan_pump_claim"))
    return {
        "scale_rows": big,
        "scheduler_ms_per_lead_small": small["scheduler_ms_per_lead"],
        "scheduler_ms_per_lead_large": large["scheduler_ms_per_lead"],
        "scheduler_scale_ratio": large["scheduler_ms_per_lead"] / small["scheduler_ms_per_lead"],
        "pump_ms_per_row_small": small["pump_ms_per_row"],
        "pump_ms_per_row_large": large["pump_ms_per_row"],
        "pump_scale_ratio": large["pump_ms_per_row"] / small["pump_ms_per_row"],
        "status_p95_ms_small": small["status_p95_ms"],
        "status_p95_ms_large": large["status_p95_ms"],
        "overview_p95_ms_small": small["overview_p95_ms"],
        "overview_p95_ms_large": large["overview_p95_ms"],
        "scale_events": events,
        "timeline_p95_ms_small": small["timeline_p95_ms"],
        "timeline_p95_ms_large": with_events["timeline_p95_ms"],
        "status_p95_ms_large_with_events": with_events["status_p95_ms"],
    }
