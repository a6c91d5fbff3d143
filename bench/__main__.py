"""`make bench`: every performance figure of the product, each next to its reference measured
in the same run, as one table and one JSON line.

    python -m bench [--leads 66667] [--scale-rows 10000000] [--only e2e,latency,...]

1. ceiling  aiosmtplib with pre-built bytes on 8 reused connections (uvloop) against the
            sink: emails/s and the client's CPU per email (the floor).
2. build    the product's message builder against `EmailMessage` + flatten.
3. e2e      leads x 3 zero-wait steps through scheduler, pump and worker processes into the
            sink; emails/s, CPU per email per daemon, peak RSS over time (memory).
4. latency  at idle: one due lead inserted, until the SMTP server accepted it; 200 times.
5. scale    the scheduler's and the pump's cost per row with a large table against a small
            one, in the same database; with the query plans.

The sink is postfix's `smtp-sink` (`apt-get install postfix`), or aiosmtpd if it is missing.
Set BENCH_PROFILE=<dir> to record py-spy profiles of the daemons during e2e.
"""

from __future__ import annotations

import argparse
import asyncio
import email.policy
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg
import uvloop

from bench.profile import summarise
from broker.topology import Names, connect, declare
from core import message
from db.migrate import migrate
from db.pool import create_pool
from db.queries import query
from pump.loop import Pump
from runtime import logs
from runtime.settings import PumpSettings, SchedulerSettings
from scheduler import planning
from scheduler.loop import Scheduler

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
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


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError):
        return 0.0


def _tree_cpu(pid: int) -> float:
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
        total += _proc_cpu(p)
        todo.extend(c for c, parent in parents.items() if parent == p)
    return total


# The services the pipeline runs on, by process name: their CPU per email is reported
# next to the daemons' (it shares the same cores).
SERVICES = {"postgres": "postgres", "rabbitmq": "beam.smp", "sink": "smtp-sink"}


def _service_cpu() -> dict[int, tuple[str, float]]:
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
            found[int(d.name)] = (svc, _proc_cpu(int(d.name)))
    return found


def _service_delta(before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each service used since `before` (processes started meanwhile count whole)."""
    used = dict.fromkeys(SERVICES, 0.0)
    for pid, (svc, cpu) in _service_cpu().items():
        used[svc] += cpu - before.get(pid, (svc, 0.0))[1]
    return used


def _rss_mb(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20
    except (OSError, IndexError):
        return 0.0


@asynccontextmanager
async def database(prefix: str = "es_bench"):  # type: ignore[no-untyped-def]
    """A fresh, migrated database; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
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


# 1. ceiling ------------------------------------------------------------------------------


async def ceiling(port: int, n: int = 20_000, conns: int = 8) -> dict[str, float]:
    body = (
        b"From: a@acme.test\r\nTo: b@example.test\r\nSubject: x\r\n\r\n" + b"x" * 76 + b"\r\n"
    ) * 25

    async def one(k: int) -> None:
        c = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await c.connect()
        for _ in range(k):
            await c.sendmail("a@acme.test", ["b@example.test"], body)
        await c.quit()

    sent = n // conns * conns
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(n // conns) for _ in range(conns)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"ceiling_emails_per_s": sent / wall, "client_cpu_ms_per_email": cpu * 1000 / sent}


# 2. build --------------------------------------------------------------------------------


def build_speed(n: int = 5_000) -> dict[str, float]:
    now = datetime.now(UTC)
    text = "Body for Ana María. " * 60
    refs = ["<a.1@acme.test>", "<a.2@acme.test>"]

    def ours() -> bytes:
        return message.build(
            message.Email(
                from_address="ana@acme.test",
                from_name="Ana Pérez",
                to_address="lead@example.test",
                subject="Re: Hello Ana María",
                text=text,
                html=None,
                message_id="<a.3@acme.test>",
                date=now,
                in_reply_to=refs[-1],
                references=refs,
                extra_headers=[("List-Unsubscribe", "<mailto:u@acme.test>")],
            )
        )

    def stdlib() -> bytes:
        m = EmailMessage(policy=email.policy.SMTP)
        m["From"] = "Ana Pérez <ana@acme.test>"
        m["To"] = "lead@example.test"
        m["Subject"] = "Re: Hello Ana María"
        m["Message-ID"] = "<a.3@acme.test>"
        m["Date"] = now
        m["In-Reply-To"] = refs[-1]
        m["References"] = " ".join(refs)
        m["List-Unsubscribe"] = "<mailto:u@acme.test>"
        m.set_content(text)
        return m.as_bytes()

    def rate(fn: Any) -> float:
        fn()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return n / (time.perf_counter() - t)

    a, b = rate(ours), rate(stdlib)
    return {"builder_per_s": a, "email_message_per_s": b, "builder_speedup": a / b}


# 3. e2e + memory --------------------------------------------------------------------------


def _spawn(env: dict[str, str], module: str, log_dir: Path) -> subprocess.Popen[bytes]:
    with (log_dir / f"{module}.log").open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=out)


def _env(dsn: str, port: int, prefix: str, **extra: str) -> dict[str, str]:
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
        "WORKER_CONCURRENCY": os.environ.get("BENCH_WORKER_CONCURRENCY", "32"),
        **extra,
    }


def _check_alive(procs: dict[str, subprocess.Popen[bytes]], log_dir: Path) -> None:
    """Stop waiting as soon as a daemon has exited: nothing will finish the run."""
    if dead := [m for m, p in procs.items() if p.poll() is not None]:
        raise RuntimeError(f"{', '.join(dead)} exited; see its log in {log_dir}")


def _last_summary(log: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for line in log.read_text().splitlines():
        if '"worker_summary"' in line:
            found = json.loads(line)
    return found


async def end_to_end(port: int, leads: int, log_dir: Path) -> dict[str, Any]:
    async with database() as dsn:
        conn = await asyncpg.connect(dsn)
        await conn.execute(SEQUENCE_SQL)
        prefix = f"es_bench_{uuid.uuid4().hex[:8]}"
        env = _env(dsn, port, prefix)
        modules = ("scheduler", "pump", "worker")
        procs = {m: _spawn(env, m, log_dir) for m in modules}
        spies: list[subprocess.Popen[bytes]] = []
        try:
            await asyncio.sleep(2)  # up, connected, listening
            if profile := os.environ.get("BENCH_PROFILE"):
                Path(profile).mkdir(parents=True, exist_ok=True)
                spy = str(Path(sys.executable).parent / "py-spy")
                for m, p in procs.items():
                    out = f"{profile}/{m}.txt"
                    cmd = [spy, "record", "--format", "raw", "--rate", "200", "--nonblocking"]
                    spies.append(
                        subprocess.Popen(
                            [*cmd, "--pid", str(p.pid), "-o", out], stdout=subprocess.DEVNULL
                        )
                    )
            cpu0 = {m: _tree_cpu(p.pid) for m, p in procs.items()}
            services0 = _service_cpu()
            rss: dict[str, list[float]] = {m: [] for m in modules}
            t0 = time.perf_counter()
            await conn.execute(
                """INSERT INTO leads (sequence_id, sender_id, email, first_name)
                   SELECT 1, 1, 'lead' || i || '@example.test', 'Lead' || i
                   FROM generate_series(1, $1) i""",
                leads,
            )
            last = 0.0
            while await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM leads WHERE status <> 'completed')"
            ):
                await asyncio.sleep(0.25)
                _check_alive(procs, log_dir)
                if time.perf_counter() - last >= 1:
                    last = time.perf_counter()
                    for m, p in procs.items():
                        rss[m].append(_rss_mb(p.pid))
            elapsed = time.perf_counter() - t0
            cpu = {m: _tree_cpu(p.pid) - cpu0[m] for m, p in procs.items()}
            services = _service_delta(services0)
            sent = await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'sent'")
        finally:
            for p in procs.values():
                p.terminate()
            for p in procs.values():
                p.wait(60)
            for s in spies:
                s.wait(30)
            await conn.close()
            await drop_topology(prefix)
    out: dict[str, Any] = {
        "emails": sent,
        "e2e_seconds": elapsed,
        "e2e_emails_per_s": sent / elapsed,
        "cpu_ms_per_email": sum(cpu.values()) * 1000 / sent,
    }
    for svc, used in services.items():
        out[f"cpu_ms_per_email_{svc}"] = used * 1000 / sent
    for m in modules:
        out[f"cpu_ms_per_email_{m}"] = cpu[m] * 1000 / sent
        samples = rss[m] or [0.0]
        warm = samples[len(samples) // 4 :] or samples
        out[f"rss_peak_mb_{m}"] = max(samples)
        # Growth after warm-up: the last quarter's peak over the second quarter's.
        q = max(1, len(warm) // 3)
        out[f"rss_growth_{m}"] = max(warm[-q:]) / max(warm[:q])
    summary = _last_summary(log_dir / "worker.log")
    out["worker_claim_batch_mean"] = summary.get("claim_batch_mean")
    out["worker_record_batch_mean"] = summary.get("record_batch_mean")
    if profile := os.environ.get("BENCH_PROFILE"):
        for m in modules:
            print(summarise(Path(f"{profile}/{m}.txt"), top=20))
    return out


# 4. latency -------------------------------------------------------------------------------


async def latency(port: int, n: int, log_dir: Path) -> dict[str, float]:
    async with database() as dsn:
        conn = await asyncpg.connect(dsn)
        await conn.execute(SEQUENCE_SQL + "DELETE FROM sequence_steps WHERE position > 1;")
        prefix = f"es_bench_{uuid.uuid4().hex[:8]}"
        env = _env(dsn, port, prefix, LOG_LEVEL="WARNING")
        procs = {m: _spawn(env, m, log_dir) for m in ("scheduler", "pump", "worker")}
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
                    _check_alive(procs, log_dir)
                    await asyncio.sleep(0.002)
                samples.append((at - t).total_seconds())
                await asyncio.sleep(0.02)
        finally:
            for p in procs.values():
                p.terminate()
            for p in procs.values():
                p.wait(60)
            await conn.close()
            await drop_topology(prefix)
    samples.sort()
    return {
        "latency_p50_ms": statistics.median(samples) * 1000,
        "latency_p99_ms": samples[int(len(samples) * 0.99) - 1] * 1000,
        "latency_max_ms": samples[-1] * 1000,
    }


# 5. scale ---------------------------------------------------------------------------------


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
    settings = SchedulerSettings(database_url=dsn, amqp_url=AMQP_URL, log_level="WARNING")
    pool = await create_pool(dsn, max_size=2)
    try:
        scheduler = Scheduler(pool, settings)
        await planning.start()
        me = os.getpid()
        wall, cpu = time.perf_counter(), _tree_cpu(me)
        done = 0
        while done < due:
            done += (await scheduler.run_once()).claimed
        return (time.perf_counter() - wall) / due, (_tree_cpu(me) - cpu) / due
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


async def _scale_point(dsn: str, future_rows: int) -> dict[str, Any]:
    """Per-row costs with `future_rows` not-yet-due leads and as many published outbox rows."""
    conn = await asyncpg.connect(dsn)
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
            await conn.execute("VACUUM ANALYZE leads")
            await conn.execute("VACUUM ANALYZE outbox")
        # DUE due leads, then the scheduler plans them (one transaction per batch).
        await conn.execute(
            """INSERT INTO leads (sequence_id, sender_id, email, first_name)
               SELECT 1, 1, 'd' || i || '@example.test', 'D' FROM generate_series(1, $1) i""",
            DUE,
        )
        now = datetime.now(UTC)
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
        "plan_claim_due": plan_claim,
        "plan_pump_claim": plan_pump,
    }


async def scale(big: int) -> dict[str, Any]:
    async with database("es_bench_scale") as dsn:
        conn = await asyncpg.connect(dsn)
        await conn.execute(SEQUENCE_SQL)
        await conn.close()
        small = await _scale_point(dsn, 10_000)
        large = await _scale_point(dsn, big)
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
    }


# -------------------------------------------------------------------------------------------

GOALS = {
    "e2e_emails_per_s": (">=", 1000),
    "e2e_ratio_to_ceiling": (">=", 0.25),
    "cpu_ratio_to_floor": ("<=", 5),
    "builder_speedup": (">=", 10),
    "scheduler_scale_ratio": ("<=", 1.5),
    "pump_scale_ratio": ("<=", 1.5),
    "latency_p99_ms": ("<", 1000),
    "rss_peak_mb_scheduler": ("<", 150),
    "rss_peak_mb_pump": ("<", 150),
    "rss_peak_mb_worker": ("<", 150),
}


def _met(value: float, op: str, goal: float) -> bool:
    return {">=": value >= goal, "<=": value <= goal, "<": value < goal}[op]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=66_667, help="e2e leads (x3 emails)")
    ap.add_argument("--latency-leads", type=int, default=200)
    ap.add_argument("--scale-rows", type=int, default=10_000_000)
    ap.add_argument("--only", default="ceiling,build,e2e,latency,scale")
    args = ap.parse_args()
    only = set(args.only.split(","))
    logs.configure("bench", "WARNING", "console")  # the in-process scheduler and pump
    log_dir = Path(tempfile.mkdtemp(prefix="es_bench_logs_"))
    port = free_port()
    kind, sink = start_sink(port)
    result: dict[str, Any] = {"sink": kind, "logs": str(log_dir)}
    try:
        await asyncio.sleep(1)
        if "ceiling" in only or "e2e" in only:
            result |= await ceiling(port)
        if "build" in only:
            result |= build_speed()
        if "e2e" in only:
            result |= await end_to_end(port, args.leads, log_dir)
            result["e2e_ratio_to_ceiling"] = (
                result["e2e_emails_per_s"] / result["ceiling_emails_per_s"]
            )
            result["cpu_ratio_to_floor"] = (
                result["cpu_ms_per_email"] / result["client_cpu_ms_per_email"]
            )
        if "latency" in only:
            result |= await latency(port, args.latency_leads, log_dir)
    finally:
        sink.terminate()
        sink.wait(10)
    if "scale" in only:
        result |= await scale(args.scale_rows)
    print(f"\n{'measure':<34}{'value':>14}  goal")
    for k, v in result.items():
        goal = GOALS.get(k)
        note = ""
        if goal is not None and isinstance(v, int | float):
            note = f"{goal[0]} {goal[1]}  {'met' if _met(v, *goal) else 'NOT met'}"
        shown = f"{v:>14.3f}" if isinstance(v, float) else f"{v!s:>14}"
        print(f"{k:<34}{shown}  {note}")
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    uvloop.run(main())
