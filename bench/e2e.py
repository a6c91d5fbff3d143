"""End to end: leads through the three daemons as processes into the sink; throughput, CPU
per email of each daemon and service, memory over time."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench.profile import summarise
from bench.services import (
    SEQUENCE_SQL,
    check_alive,
    daemon_env,
    database,
    drop_topology,
    last_summary,
    rss_mb,
    service_cpu,
    service_delta,
    spawn_daemon,
    stop_daemons,
    tree_cpu,
)
from ops import dkim as ops_dkim
from tests.processes import spawn


@dataclass
class Run:
    """One run of the daemons over a data set: what it sent, how fast, at what CPU."""

    sent: int
    seconds: float
    cpu: dict[str, float]  # daemon -> CPU seconds (with its children)
    services: dict[str, float]
    rss: dict[str, list[float]]

    @property
    def per_s(self) -> float:
        return self.sent / self.seconds

    @property
    def cpu_ms_per_email(self) -> float:
        return sum(self.cpu.values()) * 1000 / self.sent


MODULES = ("scheduler", "pump", "worker")


async def _run(
    port: int,
    setup_sql: str,
    leads_sql: str,
    leads: int,
    log_dir: Path,
    *,
    profile: str = "",
    env_extra: dict[str, str] | None = None,
    workers: int = 1,
    modules: tuple[str, ...] = MODULES,
    admin_url: str = "",
    before_leads: Callable[[], Awaitable[None]] | None = None,
) -> tuple[Run, str]:
    """Load `setup_sql`, start the daemons, insert `leads` leads with `leads_sql` ($1 = n) and
    wait until every lead completed; (the run, the database URL it used is gone after).
    `admin_url`: another PostgreSQL server; `before_leads`: called once the daemons are up."""
    async with database(admin_url=admin_url) as dsn:
        conn = await asyncpg.connect(dsn)
        await conn.execute(setup_sql)
        prefix = f"es_bench_{uuid.uuid4().hex[:8]}"
        env = daemon_env(dsn, port, prefix, **(env_extra or {}))
        procs = {m: spawn_daemon(env, m, log_dir) for m in modules}
        # More worker replicas (as compose.prod runs them); their CPU counts as the worker's.
        more = [spawn("worker", env, log_dir / f"worker-{i}.log") for i in range(2, workers + 1)]
        spies: list[subprocess.Popen[bytes]] = []
        try:
            await asyncio.sleep(2)  # up, connected, listening
            if profile:
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
            cpu0 = {m: tree_cpu(p.pid) for m, p in procs.items()}
            more0 = sum(tree_cpu(p.pid) for p in more)
            services0 = service_cpu()
            rss: dict[str, list[float]] = {m: [] for m in modules}
            if before_leads is not None:
                await before_leads()
            t0 = time.perf_counter()
            await conn.execute(leads_sql, leads)
            last = 0.0
            while await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM leads WHERE status <> 'completed')"
            ):
                await asyncio.sleep(0.25)
                check_alive(procs, log_dir)
                if time.perf_counter() - last >= 1:
                    last = time.perf_counter()
                    for m, p in procs.items():
                        rss[m].append(rss_mb(p.pid))
            elapsed = time.perf_counter() - t0
            cpu = {m: tree_cpu(p.pid) - cpu0[m] for m, p in procs.items()}
            cpu["worker"] += sum(tree_cpu(p.pid) for p in more) - more0
            services = service_delta(services0)
            sent = await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'sent'")
            checks = await conn.fetchval(LEDGER_CHECK)
        finally:
            stop_daemons({**procs, **{f"worker-{i}": p for i, p in enumerate(more, 2)}})
            for s in spies:
                s.wait(30)
            await conn.close()
            await drop_topology(prefix)
    return Run(sent, elapsed, cpu, services, rss), checks


# The paced senders' ledger as booked: the shortest gap between two hand-offs of a sender
# against its minimum, and the busiest rolling hour against its cap ('ok' or the offence).
LEDGER_CHECK = """
WITH gaps AS (
    SELECT x.sender_id, s.min_gap_seconds, s.hourly_limit,
           extract(epoch FROM x.at - lag(x.at) OVER w) AS gap,
           count(*) OVER (PARTITION BY x.sender_id ORDER BY x.at
                          RANGE BETWEEN interval '1 hour' PRECEDING AND CURRENT ROW) AS in_hour
    FROM sender_sends x JOIN senders s ON s.id = x.sender_id
    WINDOW w AS (PARTITION BY x.sender_id ORDER BY x.at)
)
SELECT coalesce(
    (SELECT format('sender %s: gap %s s < %s s', sender_id, round(gap::numeric, 3),
                   min_gap_seconds)
     FROM gaps WHERE gap < min_gap_seconds LIMIT 1),
    (SELECT format('sender %s: %s sends in an hour > %s', sender_id, in_hour, hourly_limit)
     FROM gaps WHERE in_hour > hourly_limit LIMIT 1),
    'ok')
"""

LEADS_ONE_SENDER = """INSERT INTO leads (sequence_id, sender_id, email, first_name)
    SELECT 1, 1, 'lead' || i || '@example.test', 'Lead' || i FROM generate_series(1, $1) i"""


async def end_to_end(port: int, leads: int, log_dir: Path) -> dict[str, Any]:
    """`leads` x 3 zero-wait steps through one unpaced sender."""
    profile = os.environ.get("BENCH_PROFILE", "")
    run, _ = await _run(port, SEQUENCE_SQL, LEADS_ONE_SENDER, leads, log_dir, profile=profile)
    out: dict[str, Any] = {
        "emails": run.sent,
        "e2e_seconds": run.seconds,
        "e2e_emails_per_s": run.per_s,
        "cpu_ms_per_email": run.cpu_ms_per_email,
    }
    for svc, used in run.services.items():
        out[f"cpu_ms_per_email_{svc}"] = used * 1000 / run.sent
    for m in MODULES:
        out[f"cpu_ms_per_email_{m}"] = run.cpu[m] * 1000 / run.sent
        samples = run.rss[m] or [0.0]
        warm = samples[len(samples) // 4 :] or samples
        out[f"rss_peak_mb_{m}"] = max(samples)
        # Growth after warm-up: the last quarter's peak over the second quarter's.
        q = max(1, len(warm) // 3)
        out[f"rss_growth_{m}"] = max(warm[-q:]) / max(warm[:q])
    summary = last_summary(log_dir / "worker.log")
    out["worker_claim_batch_mean"] = summary.get("claim_batch_mean")
    out["worker_record_batch_mean"] = summary.get("record_batch_mean")
    if profile:
        for m in MODULES:
            print(summarise(Path(f"{profile}/{m}.txt"), top=20))
    return out


ONE_STEP = """
    INSERT INTO sequences (name) VALUES ('Bench');
    INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
    VALUES (1, 1, 0, 'Hello {{ first_name }}', repeat('Body for {{ first_name }}. ', 60));
"""
PACED_SENDERS = """
    INSERT INTO senders (email, name, hourly_limit, min_gap_seconds, jitter_seconds)
    SELECT 's' || i || '@acme.test', 'Sender ' || i, 50, 1, 1 FROM generate_series(1, {n}) i;
"""
LEADS_SPREAD = """INSERT INTO leads (sequence_id, sender_id, email, first_name)
    SELECT 1, 1 + i % (SELECT count(*) FROM senders), 'lead' || i || '@example.test', 'Lead' || i
    FROM generate_series(1, $1) i"""


async def paced(port: int, leads: int, senders: int, log_dir: Path) -> dict[str, Any]:
    """`leads` x 1 step through one unpaced sender, then through `senders` paced senders
    (1 s gap, 1 s jitter, 50 an hour), in the same bench run."""
    plain, _ = await _run(
        port,
        ONE_STEP + "INSERT INTO senders (email, name) VALUES ('ana@acme.test', 'Ana');",
        LEADS_ONE_SENDER,
        leads,
        log_dir / "unpaced",
    )
    slow, checks = await _run(
        port, ONE_STEP + PACED_SENDERS.format(n=senders), LEADS_SPREAD, leads, log_dir / "paced"
    )
    return {
        "paced_senders": senders,
        "unpaced_emails_per_s": plain.per_s,
        "paced_emails_per_s": slow.per_s,
        "paced_throughput_ratio": slow.per_s / plain.per_s,
        "unpaced_cpu_ms_per_email": plain.cpu_ms_per_email,
        "paced_cpu_ms_per_email": slow.cpu_ms_per_email,
        "paced_cpu_ratio": slow.cpu_ms_per_email / plain.cpu_ms_per_email,
        "paced_ledger": checks,
        **{f"unpaced_cpu_ms_per_email_{m}": plain.cpu[m] * 1000 / plain.sent for m in MODULES},
        **{f"paced_cpu_ms_per_email_{m}": slow.cpu[m] * 1000 / slow.sent for m in MODULES},
        **{
            f"unpaced_cpu_ms_per_email_{k}": v * 1000 / plain.sent
            for k, v in plain.services.items()
        },
        **{f"paced_cpu_ms_per_email_{k}": v * 1000 / slow.sent for k, v in slow.services.items()},
    }


async def dkim_cost(
    port: int, leads: int, log_dir: Path, algorithm: str = "rsa", workers: int = 2
) -> dict[str, Any]:
    """`leads` x 1 step through one sender, unsigned and then signed (RSA-2048, the common
    key, unless `algorithm` says ed25519), in the same bench run, with `workers` worker
    processes (compose.prod's two: signing is CPU, and a process is one core)."""
    with tempfile.TemporaryDirectory(prefix="es_bench_dkim_") as keys:
        ops_dkim.create(Path(keys), "acme.test", "bench", algorithm=algorithm)
        setup = ONE_STEP + "INSERT INTO senders (email, name) VALUES ('ana@acme.test', 'Ana');"
        plain, _ = await _run(
            port, setup, LEADS_ONE_SENDER, leads, log_dir / "unsigned", workers=workers
        )
        signed, _ = await _run(
            port, setup, LEADS_ONE_SENDER, leads, log_dir / "signed",
            env_extra={"DKIM_KEYS_DIR": keys}, workers=workers,
        )  # fmt: skip
    return {
        "dkim_workers": workers,
        "dkim_off_emails_per_s": plain.per_s,
        "dkim_on_emails_per_s": signed.per_s,
        "dkim_throughput_ratio": signed.per_s / plain.per_s,
        "dkim_worker_cpu_ms_per_email_off": plain.cpu["worker"] * 1000 / plain.sent,
        "dkim_worker_cpu_ms_per_email_on": signed.cpu["worker"] * 1000 / signed.sent,
    }


async def guard_cost(port: int, leads: int, log_dir: Path) -> dict[str, Any]:
    """`leads` x 1 step through one unpaced sender with the reputation guard off, then on
    (its window written and judged once per recorded batch), in the same bench run."""
    setup = ONE_STEP + "INSERT INTO senders (email, name) VALUES ('ana@acme.test', 'Ana');"
    off, _ = await _run(port, setup, LEADS_ONE_SENDER, leads, log_dir / "guard_off",
                        env_extra={"GUARD_ENABLED": "false"})  # fmt: skip
    on, _ = await _run(port, setup, LEADS_ONE_SENDER, leads, log_dir / "guard_on",
                       env_extra={"GUARD_ENABLED": "true"})  # fmt: skip
    return {
        "guard_off_emails_per_s": off.per_s,
        "guard_on_emails_per_s": on.per_s,
        "guard_throughput_ratio": on.per_s / off.per_s,
        "guard_cpu_ratio": on.cpu_ms_per_email / off.cpu_ms_per_email,
    }


# The events table as it was before it was partitioned by month: one plain table with the
# same columns, checks, foreign key and statement triggers (the reference for the cost).
UNPARTITIONED_EVENTS = """
ALTER TABLE events RENAME TO events_by_month;
CREATE TABLE events (LIKE events_by_month INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE events ADD PRIMARY KEY (id),
    ADD FOREIGN KEY (lead_id) REFERENCES leads (id) ON DELETE CASCADE;
CREATE INDEX ON events (lead_id, id);
CREATE TRIGGER events_counted_plain AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION count_events();
CREATE TRIGGER events_to_webhooks_plain AFTER INSERT ON events
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION webhook_enqueue();
ALTER SEQUENCE events_id_seq OWNED BY events.id;
DROP TABLE events_by_month;
"""


async def partitions_cost(port: int, leads: int, log_dir: Path) -> dict[str, Any]:
    """`leads` x 1 step with the events table as one plain table, then by month as it
    ships, in the same bench run."""
    setup = ONE_STEP + "INSERT INTO senders (email, name) VALUES ('ana@acme.test', 'Ana');"
    plain, _ = await _run(port, setup + UNPARTITIONED_EVENTS, LEADS_ONE_SENDER, leads,
                          log_dir / "events_plain")  # fmt: skip
    by_month, _ = await _run(port, setup, LEADS_ONE_SENDER, leads, log_dir / "events_by_month")
    return {
        "events_plain_emails_per_s": plain.per_s,
        "events_by_month_emails_per_s": by_month.per_s,
        "partitions_throughput_ratio": by_month.per_s / plain.per_s,
    }
