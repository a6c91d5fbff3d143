"""What every measure shares: the services (databases, queue names, the SMTP sink),
processes' CPU and memory, and the daemons as processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from broker.topology import Names, connect
from db.migrate import migrate
from tests.processes import spawn

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MESSAGE_ID_SECRET = "message-id-secret-of-the-bench-0123456789"  # noqa: S105 - a test key
STEPS = 3
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

SEQUENCE_SQL = """
    INSERT INTO senders (email, name) VALUES ('ana@acme.test', 'Ana');
    INSERT INTO sequences (name) VALUES ('Bench');
    INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
    VALUES (1, 1, 0, 'Hello {{ first_name }}', repeat('Body for {{ first_name }}. ', 60)),
           (1, 2, 0, NULL, repeat('Following up, {{ first_name }}. ', 60)),
           (1, 3, 0, NULL, repeat('Last one, {{ first_name }}. ', 60));
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(port: int) -> tuple[str, subprocess.Popen[bytes]]:
    if shutil.which("smtp-sink"):
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        cmd = ["smtp-sink", *user, "-c", f"127.0.0.1:{port}", "1000"]
        return "smtp-sink", subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    cmd = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"]
    return "aiosmtpd", subprocess.Popen([*cmd, "-c", "aiosmtpd.handlers.Sink"])


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError):
        return 0.0


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live descendants (the scheduler plans in a child)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += proc_cpu(p)
        todo.extend(c for c, parent in parents.items() if parent == p)
    return total


# The services the pipeline runs on, by process name: their CPU per email is reported
# next to the daemons' (it shares the same cores).
SERVICES = {"postgres": "postgres", "rabbitmq": "beam.smp", "sink": "smtp-sink"}


def service_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds of every process of the services, by pid."""
    found: dict[int, tuple[str, float]] = {}
    names = {comm: svc for svc, comm in SERVICES.items()}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            comm = (d / "comm").read_text().strip()
        except OSError:
            continue
        if (svc := names.get(comm)) is not None:
            found[int(d.name)] = (svc, proc_cpu(int(d.name)))
    return found


def service_delta(before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each service used since `before` (processes started meanwhile count whole)."""
    used = dict.fromkeys(SERVICES, 0.0)
    for pid, (svc, cpu) in service_cpu().items():
        used[svc] += cpu - before.get(pid, (svc, 0.0))[1]
    return used


def rss_mb(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20
    except (OSError, IndexError):
        return 0.0


@asynccontextmanager
async def database(prefix: str = "es_bench", admin_url: str = ""):  # type: ignore[no-untyped-def]
    """A fresh, migrated database (on the server of `admin_url`, default PG_ADMIN); its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin_url = admin_url or PG_ADMIN
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        await migrate(dsn)
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def drop_topology(prefix: str) -> None:
    """Delete what the daemons declared under `prefix`: the broker keeps no trace of a run."""
    names = Names.from_prefix(prefix)
    connection = await connect(AMQP_URL, name="bench-cleanup")
    try:
        channel = await connection.channel()
        for queue in (names.queue, names.dead_queue):
            await channel.queue_delete(queue)
        for exchange in (names.exchange, names.dead_exchange):
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


def spawn_daemon(env: dict[str, str], module: str, log_dir: Path) -> subprocess.Popen[bytes]:
    log_dir.mkdir(parents=True, exist_ok=True)
    return spawn(module, env, log_dir / f"{module}.log")


def daemon_env(dsn: str, port: int, prefix: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": dsn,
        "AMQP_URL": AMQP_URL,
        "AMQP_PREFIX": prefix,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "SUMMARY_INTERVAL_SECONDS": "5",
        "MESSAGE_ID_SECRET": MESSAGE_ID_SECRET,
        "WORKER_CONCURRENCY": os.environ.get("BENCH_WORKER_CONCURRENCY", "32"),
        **extra,
    }


def stop_daemons(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM every daemon, then wait for each (they drain and exit 0)."""
    for p in procs.values():
        p.terminate()
    for p in procs.values():
        p.wait(60)


def check_alive(procs: dict[str, subprocess.Popen[bytes]], log_dir: Path) -> None:
    """Stop waiting as soon as a daemon has exited: nothing will finish the run."""
    if dead := [m for m, p in procs.items() if p.poll() is not None]:
        raise RuntimeError(f"{', '.join(dead)} exited; see its log in {log_dir}")


def last_summary(log: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for line in log.read_text().splitlines():
        if '"worker_summary"' in line:
            found = json.loads(line)
    return found
