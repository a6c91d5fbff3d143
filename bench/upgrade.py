"""The upgrade to events by month (migration 0022) on a large table, both ways: the plain
migration (everything under the table's lock) and the default one, which first prepares the
table without blocking writers. A writer inserts one event every 10 ms throughout; the
figures are the migration's duration and the longest that writer waited.

    python -m bench.upgrade [--events 10000000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from bench.services import PG_ADMIN, SEQUENCE_SQL
from db.migrate import MIGRATIONS_DIR, migrate

BEFORE = 21  # the last version before events by month
LEADS = 1_000_000


def _url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


async def _load(name: str, events: int) -> None:
    """A database at version BEFORE with LEADS leads and `events` events over 13 months."""
    old = Path(tempfile.mkdtemp(prefix="es_bench_migrations_"))
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if int(path.name[:4]) <= BEFORE:
            shutil.copy(path, old)
    await migrate(_url(name), old)
    shutil.rmtree(old)
    conn = await asyncpg.connect(_url(name))
    try:
        await conn.execute(SEQUENCE_SQL)
        await conn.execute(
            """INSERT INTO leads (sequence_id, sender_id, email, status)
               SELECT 1, 1, 'u' || i || '@example.test', 'completed'
               FROM generate_series(1, $1) i""",
            LEADS,
        )
        # Loaded as rows that were written over 13 months (the counting triggers are not what
        # is measured; the foreign key holds by construction).
        await conn.execute("ALTER TABLE events DISABLE TRIGGER ALL")
        step = 1_000_000
        for start in range(0, events, step):
            await conn.execute(
                """INSERT INTO events (lead_id, step, type, at, data)
                   SELECT 1 + i % $3, i % 3, (ARRAY['queued', 'sent', 'completed'])[1 + i % 3],
                          now() - (i % 395) * interval '1 day', '{"message_id": "<x@y>"}'
                   FROM generate_series($1::bigint, $2::bigint) i""",
                start, min(start + step, events) - 1, LEADS,
            )  # fmt: skip
        await conn.execute("ALTER TABLE events ENABLE TRIGGER ALL")
        await conn.execute("VACUUM ANALYZE events")
    finally:
        await conn.close()


async def _writer(dsn: str, stop: asyncio.Event, waits: list[float]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            t0 = time.perf_counter()
            await conn.execute("INSERT INTO events (lead_id, step, type) VALUES (1, 0, 'sent')")
            waits.append(time.perf_counter() - t0)
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


async def _upgrade(name: str, online: bool) -> dict[str, Any]:
    stop = asyncio.Event()
    waits: list[float] = []
    writer = asyncio.create_task(_writer(_url(name), stop, waits))
    await asyncio.sleep(1)
    t0 = time.perf_counter()
    await migrate(_url(name), online=online)
    took = time.perf_counter() - t0
    await asyncio.sleep(1)
    stop.set()
    await writer
    waits.sort()
    conn = await asyncpg.connect(_url(name))
    try:
        parts = await conn.fetchval("SELECT count(*) FROM event_partitions")
        kept = await conn.fetchval("SELECT count(*) FROM events_before")
    finally:
        await conn.close()
    return {
        "seconds": took,
        "writer_longest_wait_s": waits[-1],
        "writer_p99_ms": waits[int(len(waits) * 0.99) - 1] * 1000,
        "writer_inserts": len(waits),
        "partitions": parts,
        "rows_in_events_before": kept,
    }


async def upgrade(events: int) -> dict[str, Any]:
    base = f"es_bench_upgrade_{uuid.uuid4().hex[:8]}"
    names = [base, base + "_plain"]
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{base}"')
        t0 = time.perf_counter()
        await _load(base, events)
        print(f"loaded {events:,} events in {time.perf_counter() - t0:.0f} s")
        await admin.execute(f'CREATE DATABASE "{names[1]}" TEMPLATE "{base}"')
        plain = await _upgrade(names[1], online=False)
        online = await _upgrade(base, online=True)
    finally:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    result = {"events": events}
    for way, figures in (("plain", plain), ("online", online)):
        result |= {f"{way}_{k}": v for k, v in figures.items()}
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    args = ap.parse_args()
    result = uvloop.run(upgrade(args.events))
    for k, v in result.items():
        print(f"{k:<34}{v:>14.3f}" if isinstance(v, float) else f"{k:<34}{v!s:>14}")


if __name__ == "__main__":
    main()
