"""End-to-end throughput: N leads x 3 zero-wait steps through the three daemons, against a
sink SMTP server, next to the SMTP client's own ceiling measured against the same sink in
the same run. Prints a table and one JSON line.

    python -m bench [--leads 1000] [--workers 1] [--sink smtp-sink|aiosmtpd]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiosmtplib
import asyncpg

from db.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
STEPS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(kind: str, port: int) -> subprocess.Popen[bytes]:
    if kind == "smtp-sink" and shutil.which("smtp-sink"):
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        return subprocess.Popen(
            ["smtp-sink", *user, "-c", f"127.0.0.1:{port}", "1000"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{port}",
            "-c",
            "aiosmtpd.handlers.Sink",
        ]
    )


async def client_ceiling(port: int, n: int, conns: int = 8) -> float:
    """Emails/s for aiosmtplib sending pre-built ~2 KB messages on reused connections."""
    body = (
        b"From: a@acme.test\r\nTo: b@example.test\r\nSubject: x\r\n\r\n" + b"x" * 76 + b"\r\n"
    ) * 25

    async def one(k: int) -> None:
        c = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await c.connect()
        for _ in range(k):
            await c.sendmail("a@acme.test", ["b@example.test"], body)
        await c.quit()

    t = time.perf_counter()
    await asyncio.gather(*(one(n // conns) for _ in range(conns)))
    return (n // conns * conns) / (time.perf_counter() - t)


async def end_to_end(leads: int, workers: int, port: int) -> dict[str, float]:
    name = f"es_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        await conn.execute("""
            INSERT INTO senders (email, name) VALUES ('ana@acme.test', 'Ana');
            INSERT INTO sequences (name) VALUES ('Bench');
            INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
            VALUES (1, 1, 0, 'Hello {{ first_name }}', repeat('Body for {{ first_name }}. ', 60)),
                   (1, 2, 0, NULL, repeat('Following up, {{ first_name }}. ', 60)),
                   (1, 3, 0, NULL, repeat('Last one, {{ first_name }}. ', 60));
        """)
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "AMQP_URL": AMQP_URL,
            "AMQP_PREFIX": f"es_bench_{name}",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(port),
            "LOG_LEVEL": "WARNING",
            "WORKER_CONCURRENCY": "32",
        }
        for module, count in (("scheduler", 1), ("pump", 1), ("worker", workers)):
            for _ in range(count):
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", module], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
                    )
                )
        await asyncio.sleep(2)  # daemons up and listening
        cpu0 = _children_cpu(procs)
        t0 = time.perf_counter()
        await conn.execute(
            """INSERT INTO leads (sequence_id, sender_id, email, first_name)
                              SELECT 1, 1, 'lead' || i || '@example.test', 'Lead' || i
                              FROM generate_series(1, $1) i""",
            leads,
        )
        while await conn.fetchval("SELECT count(*) FROM leads WHERE status <> 'completed'"):
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
        cpu = _children_cpu(procs) - cpu0
        sent = await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'sent'")
        await conn.close()
        return {
            "emails": sent,
            "seconds": elapsed,
            "emails_per_s": sent / elapsed,
            "cpu_ms_per_email": cpu * 1000 / sent,
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _children_cpu(procs: list[subprocess.Popen[bytes]]) -> float:
    total = 0.0
    for p in procs:
        try:
            fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError):
            pass
    return total


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--sink", default="smtp-sink")
    args = ap.parse_args()
    port = free_port()
    sink = start_sink(args.sink, port)
    try:
        await asyncio.sleep(1)
        ceiling = await client_ceiling(port, 4000)
        e2e = await end_to_end(args.leads, args.workers, port)
    finally:
        sink.terminate()
        sink.wait(10)
    kind = "smtp-sink" if args.sink == "smtp-sink" and shutil.which("smtp-sink") else "aiosmtpd"
    result = {
        "sink": kind,
        "leads": args.leads,
        "steps": STEPS,
        **e2e,
        "client_ceiling_emails_per_s": ceiling,
        "ratio_to_ceiling": e2e["emails_per_s"] / ceiling,
    }
    print(f"{'measure':<34}{'value':>12}")
    for k, v in result.items():
        print(f"{k:<34}{v:>12.3f}" if isinstance(v, float) else f"{k:<34}{v!s:>12}")
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
