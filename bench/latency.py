"""Idle latency: one due lead inserted, until the SMTP server accepted it."""

from __future__ import annotations

import asyncio
import statistics
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.services import (
    SEQUENCE_SQL,
    check_alive,
    daemon_env,
    database,
    drop_topology,
    spawn_daemon,
    stop_daemons,
)


async def latency(port: int, n: int, log_dir: Path) -> dict[str, float]:
    async with database() as dsn:
        conn = await asyncpg.connect(dsn)
        await conn.execute(SEQUENCE_SQL + "DELETE FROM sequence_steps WHERE position > 1;")
        prefix = f"es_bench_{uuid.uuid4().hex[:8]}"
        env = daemon_env(dsn, port, prefix, LOG_LEVEL="WARNING")
        procs = {m: spawn_daemon(env, m, log_dir) for m in ("scheduler", "pump", "worker")}
        samples: list[float] = []
        try:
            await asyncio.sleep(3)
            for i in range(n):
                t = datetime.now(UTC)
                lead = await conn.fetchval(
                    "INSERT INTO leads (sequence_id, sender_id, email, first_name)"
                    " VALUES (1, 1, $1, 'L') RETURNING id",
                    f"idle{i}@example.test",
                )
                while (
                    at := await conn.fetchval(
                        "SELECT sent_at FROM deliveries WHERE lead_id = $1 AND status = 'sent'",
                        lead,
                    )
                ) is None:
                    check_alive(procs, log_dir)
                    await asyncio.sleep(0.002)
                samples.append((at - t).total_seconds())
                await asyncio.sleep(0.02)
        finally:
            stop_daemons(procs)
            await conn.close()
            await drop_topology(prefix)
    samples.sort()
    return {
        "latency_p50_ms": statistics.median(samples) * 1000,
        "latency_p99_ms": samples[int(len(samples) * 0.99) - 1] * 1000,
        "latency_max_ms": samples[-1] * 1000,
    }
