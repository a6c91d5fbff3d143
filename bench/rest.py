"""What the audit trail and the role check cost a REST call: PATCH /api/v1/senders/1 (a
change the audit records) against the API as a process, with the audit triggers on and
then off, in alternating rounds of the same run; and the role check's own time per call."""

from __future__ import annotations

import asyncio
import time
import timeit
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import asyncpg

from api import roles
from bench.services import check_alive, daemon_env, database, free_port, spawn_daemon, stop_daemons
from core.roles import Role
from ops import tokens

AUDITED = ("senders", "sequences", "sequence_steps", "sequence_senders", "suppressions",
           "api_tokens", "webhook_endpoints")  # fmt: skip
ROUNDS = 10
CALLS = 300  # per round and way


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[max(int(len(values) * q) - 1, 0)]


async def _calls(session: aiohttp.ClientSession, url: str, n: int, took: list[float]) -> None:
    for i in range(n):
        t0 = time.perf_counter()
        async with session.patch(url, json={"hourly_limit": 100 + i % 2}) as answer:
            await answer.read()
            if answer.status != 200:
                raise RuntimeError(f"PATCH answered {answer.status}")
        took.append((time.perf_counter() - t0) * 1000)


def _role_check_us() -> float:
    """µs per role check of a matched route (what every request pays)."""
    request: Any = SimpleNamespace(
        scope={"route": SimpleNamespace(path="/api/v1/senders/{sender_id}")}, method="PATCH"
    )
    n = 200_000
    return timeit.timeit(lambda: roles.require(request, Role.ADMIN), number=n) / n * 1e6


async def rest_cost(log_dir: Path) -> dict[str, Any]:
    async with database("es_bench_rest") as dsn:
        conn = await asyncpg.connect(dsn)
        await conn.execute("INSERT INTO senders (email, name) VALUES ('ana@acme.test', 'Ana')")
        token = await tokens.create(conn, "bench", Role.ADMIN)
        api_port = free_port()
        env = daemon_env(dsn, 25, f"es_bench_{uuid.uuid4().hex[:8]}", API_HOST="127.0.0.1",
                         API_PORT=str(api_port), LOG_LEVEL="WARNING")  # fmt: skip
        procs = {"api": spawn_daemon(env, "api", log_dir)}
        on: list[float] = []
        off: list[float] = []
        try:
            await asyncio.sleep(3)
            check_alive(procs, log_dir)
            url = f"http://127.0.0.1:{api_port}/api/v1/senders/1"
            headers = {"authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession(headers=headers) as session:
                await _calls(session, url, 200, [])  # warm-up
                for _ in range(ROUNDS):
                    await _calls(session, url, CALLS, on)
                    for table in AUDITED:
                        await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER audit")
                    await _calls(session, url, CALLS, off)
                    for table in AUDITED:
                        await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER audit")
            audited = await conn.fetchval("SELECT count(*) FROM audit_log")
        finally:
            stop_daemons(procs)
            await conn.close()
    return {
        "rest_patch_p50_ms_audit_off": _p(off, 0.5),
        "rest_patch_p50_ms_audit_on": _p(on, 0.5),
        "rest_patch_p99_ms_audit_off": _p(off, 0.99),
        "rest_patch_p99_ms_audit_on": _p(on, 0.99),
        "rest_audit_p99_added_ms": _p(on, 0.99) - _p(off, 0.99),
        "rest_audit_rows": audited,
        "rest_role_check_us": _role_check_us(),
    }
