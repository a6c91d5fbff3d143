"""Webhooks: end-to-end throughput with an endpoint subscribed to lead.sent against none,
deliveries per second to a local receiver, and event-to-delivery latency when idle."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from bench.e2e import LEADS_ONE_SENDER, MODULES, ONE_STEP, _run
from bench.services import daemon_env, database, spawn_daemon, stop_daemons
from core.webhooks import new_secret
from tests.ports import free_port

RATE_EVENTS = 20_000
IDLE_EVENTS = 300


def endpoint_sql(port: int, types: str = "{lead.sent}") -> str:
    return (
        "INSERT INTO webhook_endpoints (url, secret, event_types) VALUES "
        f"('http://127.0.0.1:{port}/in', '{new_secret()}', '{types}');"
    )


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.receiver", str(port)])
    time.sleep(1.5)
    return proc


async def webhook_cost(port: int, leads: int, log_dir: Path) -> dict[str, Any]:
    rport = free_port()
    receiver = start_receiver(rport)
    try:
        setup = ONE_STEP + "INSERT INTO senders (email, name) VALUES ('ana@acme.test', 'Ana');"
        off, _ = await _run(port, setup, LEADS_ONE_SENDER, leads, log_dir / "webhooks_off")
        on, _ = await _run(
            port, setup + endpoint_sql(rport), LEADS_ONE_SENDER, leads, log_dir / "webhooks_on",
            env_extra={"WEBHOOK_ALLOW_PRIVATE": "true"}, modules=(*MODULES, "webhooks"),
        )  # fmt: skip
        rate = await _rate(port, rport, log_dir / "webhooks_rate")
        idle = await _idle(port, rport, log_dir / "webhooks_idle")
    finally:
        receiver.terminate()
        receiver.wait(10)
    return {
        "webhooks_off_emails_per_s": off.per_s,
        "webhooks_on_emails_per_s": on.per_s,
        "webhooks_throughput_ratio": on.per_s / off.per_s,
        "webhooks_cpu_ms_per_email_deliverer": on.cpu.get("webhooks", 0) * 1000 / on.sent,
        **rate,
        **idle,
    }


async def _rate(port: int, rport: int, log_dir: Path) -> dict[str, Any]:
    """RATE_EVENTS events written at once; how fast one deliverer delivers them."""
    async with database() as dsn:
        conn = await asyncpg.connect(dsn)
        await conn.execute(endpoint_sql(rport))
        env = daemon_env(dsn, port, f"es_bench_{uuid.uuid4().hex[:8]}",
                         WEBHOOK_ALLOW_PRIVATE="true")  # fmt: skip
        proc = spawn_daemon(env, "webhooks", log_dir)
        try:
            await asyncio.sleep(2)
            t0 = time.perf_counter()
            await conn.execute(
                "INSERT INTO events (type, data) SELECT 'sent', '{}' FROM generate_series(1, $1)",
                RATE_EVENTS,
            )
            while await conn.fetchval("SELECT EXISTS (SELECT 1 FROM webhook_deliveries)"):
                await asyncio.sleep(0.1)
            elapsed = time.perf_counter() - t0
        finally:
            stop_daemons({"webhooks": proc})
            await conn.close()
    return {"webhook_deliveries_per_s": RATE_EVENTS / elapsed}


async def _idle(port: int, rport: int, log_dir: Path) -> dict[str, Any]:
    """One event at a time to an idle deliverer, 50 ms apart: from the event's commit to
    its delivery recorded, p50 and p99."""
    async with database() as dsn:
        conn = await asyncpg.connect(dsn)
        await conn.execute(endpoint_sql(rport))
        env = daemon_env(dsn, port, f"es_bench_{uuid.uuid4().hex[:8]}",
                         WEBHOOK_ALLOW_PRIVATE="true")  # fmt: skip
        proc = spawn_daemon(env, "webhooks", log_dir)
        ms: list[float] = []
        try:
            await asyncio.sleep(2)
            for _ in range(IDLE_EVENTS):
                # From the event's commit until its delivery is recorded (the row gone).
                t0 = time.perf_counter()
                await conn.execute("INSERT INTO events (type, data) VALUES ('sent', '{}')")
                while await conn.fetchval("SELECT EXISTS (SELECT 1 FROM webhook_deliveries)"):
                    await asyncio.sleep(0.001)
                ms.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(0.05)
        finally:
            stop_daemons({"webhooks": proc})
            await conn.close()
    ms.sort()
    return {
        "webhook_idle_p50_ms": statistics.median(ms),
        "webhook_idle_p99_ms": ms[int(len(ms) * 0.99) - 1],
    }
