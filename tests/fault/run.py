"""The fault suite: replicas of the three daemons as processes against a private PostgreSQL,
a private RabbitMQ and a hostile SMTP server, faults injected at random from a printed seed,
then every guarantee checked against what the server accepted and what the database says.

`python -m tests.fault --seed N --duration S` runs the long form (`make fault-long`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TypeVar

import aio_pika
import asyncpg

from broker.topology import ROUTING_KEY, Names, open_connection
from db.migrate import migrate
from tests.fault.hostile_smtp import HostileSmtp
from tests.fault.services import PrivatePostgres, PrivateRabbit, PrivateRabbitCluster
from tests.processes import spawn

ROOT = Path(__file__).resolve().parents[2]
REPLICAS = {"scheduler": 2, "pump": 2, "worker": 3}
PACED_GAP = 1  # seconds between sends of the paced sender
# Seconds between a booked slot and MAIL FROM at the server when the 2 cores are overloaded
# (a sanity bound; the exact check is on the hand-offs booked under the sender's lock).
HANDOFF_JITTER = 0.5
WINDOW_DELAY = 15.0  # the windowed sequence opens this long after the run starts
FAULTS = (
    "kill9", "sigterm", "broker_restart", "pg_terminate", "pg_restart", "garbage",
    "relay_refuses", "relay_530", "relay_554",
)  # fmt: skip


T = TypeVar("T")


@dataclass
class Config:
    seed: int
    duration: float  # seconds of faults while leads keep arriving
    leads_per_batch: int = 60
    batch_every: float = 3.0
    fault_every: tuple[float, float] = (2.0, 6.0)
    drain_timeout: float = 240.0
    log_dir: Path | None = None
    cluster: bool = False  # three RabbitMQ nodes; the broker fault hits one node at a time


@dataclass
class Report:
    seed: int
    duration: float
    leads: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    exits: Counter[str] = field(default_factory=Counter)  # unplanned daemon exits by code
    smtp: Counter[str] = field(default_factory=Counter)
    db: dict[str, int] = field(default_factory=dict)
    garbage: int = 0
    dead_letters: int = 0
    outage_seconds: float = 0.0  # relay outages injected, in all
    failures: list[str] = field(default_factory=list)
    wall: float = 0.0

    def table(self) -> str:
        rows = [
            ("seed", self.seed),
            ("fault duration (s)", round(self.duration)),
            ("wall time (s)", round(self.wall)),
            ("leads", self.leads),
            *((f"fault: {k}", v) for k, v in sorted(self.faults.items())),
            *((f"unplanned exit code {k}", v) for k, v in sorted(self.exits.items())),
            *((f"smtp: {k}", v) for k, v in sorted(self.smtp.items())),
            *((f"db: {k}", v) for k, v in sorted(self.db.items())),
            ("garbage published", self.garbage),
            ("relay outage (s)", round(self.outage_seconds)),
            ("dead letters", self.dead_letters),
            ("checks", "PASS" if not self.failures else f"FAIL ({len(self.failures)})"),
        ]
        width = max(len(str(k)) for k, _ in rows)
        lines = [f"| {'measure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
        lines += [f"| {str(k).ljust(width)} | {v} |" for k, v in rows]
        lines += [f"  FAILED: {f}" for f in self.failures]
        return "\n".join(lines)


class Fleet:
    """The daemons as processes; restarts any that exits (as a container restart policy does)."""

    def __init__(self, env: dict[str, str], log_dir: Path, report: Report) -> None:
        self.env = env
        self.log_dir = log_dir
        self.report = report
        self.procs: dict[tuple[str, int], subprocess.Popen[bytes]] = {}
        self.planned: set[tuple[str, int]] = set()  # stops we caused
        self.started: dict[tuple[str, int], float] = {}

    def start(self, key: tuple[str, int]) -> None:
        module, i = key
        self.started[key] = time.monotonic()
        # One file per replica across restarts: marked where each process begins.
        self.procs[key] = spawn(module, self.env, self.log_dir / f"{module}-{i}.log", mark=True)

    def start_all(self) -> None:
        for module, n in REPLICAS.items():
            for i in range(n):
                self.start((module, i))

    async def supervise(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for key, p in list(self.procs.items()):
                code = p.poll()
                if code is None:
                    continue
                if key in self.planned:
                    continue
                self.report.exits[str(code)] += 1
                self.start(key)
            await asyncio.sleep(0.5)

    async def kill9(self, rng: random.Random) -> str:
        key = rng.choice(sorted(self.procs))
        self.planned.add(key)
        self.procs[key].kill()
        await asyncio.to_thread(self.procs[key].wait)
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        self.start(key)
        self.planned.discard(key)
        return f"kill -9 {key[0]}#{key[1]}"

    async def sigterm(self, rng: random.Random) -> str:
        # A process still importing has no handler yet (it would die of the signal, which
        # says nothing about shutdown): pick among those up for a few seconds.
        up = [k for k in sorted(self.procs) if time.monotonic() - self.started[k] > 5]
        key = rng.choice(up or sorted(self.procs))
        self.planned.add(key)
        p = self.procs[key]
        with (self.log_dir / f"{key[0]}-{key[1]}.log").open("ab") as out:
            out.write(f"--- SIGTERM pid={p.pid} t={time.monotonic():.3f}\n".encode())
        p.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(p.wait, 60)
        except subprocess.TimeoutExpired:
            p.kill()
            code = -9
        if code != 0:
            self.report.failures.append(f"{key[0]}#{key[1]} exited {code} on SIGTERM")
        self.start(key)
        self.planned.discard(key)
        return f"SIGTERM {key[0]}#{key[1]} -> exit {code}"

    def stop_all(self) -> dict[str, int]:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = {}
        for (module, i), p in self.procs.items():
            try:
                codes[f"{module}#{i}"] = p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[f"{module}#{i}"] = -9
        return codes


SCHEMA = """
    -- Senders 1-2 take the one-call claim; 3-4 are paced (caps they never reach), so their
    -- messages are booked in the ledger under the sender's lock, as most real senders are.
    INSERT INTO senders (email, name, hourly_limit, daily_limit, daily_new_limit)
    SELECT 's' || i || '@acme.test', 'Sender ' || i, CASE WHEN i > 2 THEN 1000000 END,
           CASE WHEN i > 2 THEN 10000000 END, CASE WHEN i > 2 THEN 10000000 END
    FROM generate_series(1, 4) i;
    INSERT INTO senders (email, name, min_gap_seconds) VALUES ('paced@acme.test', 'Paced', {gap});
    INSERT INTO sequences (name) VALUES ('three steps');
    INSERT INTO sequences (name, timezone, send_from, send_until)
    VALUES ('windowed', 'UTC', '{open}', '{close}');
    INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text) VALUES
        (1, 1, 0, 'Hello {{{{ first_name }}}}', 'One'),
        (1, 2, 1, NULL, 'Two'),
        (1, 3, 2, 'Last', 'Three'),
        (2, 1, 0, 'Window {{{{ first_name }}}}', 'W1'),
        (2, 2, 0, NULL, 'W2');
"""


async def _load(pool: asyncpg.Pool, batch: int, n: int) -> int:
    """A batch: mostly plain leads over 4 senders, a few bounces and windowed leads; the
    first batch also gives the paced sender its leads."""
    rows = []
    for k in range(n):
        i = batch * 100_000 + k
        if k % 25 == 0:
            rows.append((1, 1 + k % 4, f"bounce{i}@example.test"))
        elif k % 10 == 0:
            rows.append((2, 1 + k % 4, f"w{i}@example.test"))
        else:
            rows.append((1, 1 + k % 4, f"l{i}@example.test"))
    if batch == 0:
        rows += [(1, 5, f"p{k}@example.test") for k in range(6)]
    await pool.executemany(
        "INSERT INTO leads (sequence_id, sender_id, email, first_name) VALUES ($1, $2, $3, 'X')",
        rows,
    )
    return len(rows)


GARBAGE: list[tuple[bytes, str | None]] = [
    (b"\x00\xffnot json", "1"),
    (b'{"lead_id": "x"}', "2"),
    (b"[]", "3"),
    (b'{"lead_id": 1, "step": 1}', "not-a-number"),
    (b"{}", None),
]


async def run(config: Config) -> Report:
    report = Report(seed=config.seed, duration=config.duration)
    rng = random.Random(config.seed)
    print(
        f"fault suite: seed={config.seed} duration={config.duration}s"
        f"{' rabbitmq=3-node cluster' if config.cluster else ''}",
        flush=True,
    )
    log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix=f"es_fault_{config.seed}_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    pg = PrivatePostgres().start()
    mq: PrivateRabbit | PrivateRabbitCluster = (
        PrivateRabbitCluster() if config.cluster else PrivateRabbit()
    )
    smtp = HostileSmtp(config.seed).start()
    fleet: Fleet | None = None
    try:
        await asyncio.to_thread(mq.start)
        admin = await asyncpg.connect(pg.admin_url)
        await admin.execute("CREATE DATABASE app")
        await admin.close()
        dsn = pg.url("app")
        await migrate(dsn)
        opens = (datetime.now(UTC) + timedelta(seconds=WINDOW_DELAY)).replace(microsecond=0)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        await pool.execute(
            SCHEMA.format(
                gap=PACED_GAP,
                open=opens.time().isoformat(timespec="seconds"),
                close=(opens + timedelta(hours=2)).time().isoformat(timespec="seconds"),
            )
        )
        prefix = f"fault_{config.seed}"
        env = {
            "PATH": os.environ["PATH"],
            "DATABASE_URL": dsn,
            "AMQP_URL": mq.url,
            "AMQP_PREFIX": prefix,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_TIMEOUT_SECONDS": "5",
            "RETRY_BASE_SECONDS": "0.5",
            "RETRY_MAX_SECONDS": "2",
            "SEND_MAX_ATTEMPTS": "8",
            "RESCUE_AFTER_SECONDS": "20",
            "SCHEDULER_POLL_SECONDS": "1",
            "PUMP_POLL_SECONDS": "1",
            "MESSAGE_ID_SECRET": f"fault-suite-message-id-secret-{config.seed:020d}",
            "SUMMARY_INTERVAL_SECONDS": "10",
            "SHUTDOWN_TIMEOUT_SECONDS": "15",
            "WORKER_CONCURRENCY": "8",
            "SMTP_CIRCUIT_SECONDS": "2",
            # The reputation guard is on: the relay outage below pauses senders for blocks;
            # they probe after 3 s and resume once a message gets through. The list holds
            # 4 to 10 % dead addresses per sender on purpose (bounce handling is under test),
            # so the bounce threshold sits above that: a pause for bounces waits for a
            # person, and nobody is here to resume it.
            "GUARD_COOLDOWN_SECONDS": "3",
            "GUARD_HARD_BOUNCE_RATE": "0.25",
            "DB_POOL_SIZE": "5",
            "LOG_FORMAT": "json",
        }
        fleet = Fleet(env, log_dir, report)
        fleet.start_all()
        stop_faults = asyncio.Event()
        supervisor = asyncio.create_task(fleet.supervise(stop_faults))

        async def inject(kind: str) -> str:
            assert fleet is not None
            match kind:
                case "kill9":
                    return await fleet.kill9(rng)
                case "sigterm":
                    return await fleet.sigterm(rng)
                case "broker_restart":
                    if isinstance(mq, PrivateRabbitCluster):
                        return await _node_fault(mq, rng)
                    await asyncio.to_thread(mq.stop_app)
                    await asyncio.sleep(rng.uniform(1, 4))
                    await asyncio.to_thread(mq.start_app)
                    return "rabbitmq stop_app/start_app"
                case "pg_terminate":
                    n = await pool.fetchval(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = 'app' AND pid <> pg_backend_pid()"
                    )
                    return f"terminated {n} PostgreSQL connections"
                case "pg_restart":
                    await asyncio.to_thread(pg.restart)
                    return "PostgreSQL restarted"
                case "relay_refuses" | "relay_530" | "relay_554":
                    # An outage of the relay for a twentieth of the run (at least 3 s, at
                    # most 2 minutes); the rest of the faults and the load go on meanwhile.
                    # One at a time, and the relay works at least twice as long between two:
                    # outages take at most a third of the run.
                    if time.monotonic() < relay_quiet_until[0]:
                        return f"{kind}: skipped, the relay had an outage lately"
                    length = min(max(config.duration / 20, 3.0), 120.0) * rng.uniform(0.5, 1)
                    relay_quiet_until[0] = time.monotonic() + 3 * length
                    if kind == "relay_refuses":
                        await asyncio.to_thread(smtp.refuse)
                        end = smtp.listen
                    else:
                        reply = ("530 5.7.0 Authentication required" if kind == "relay_530"
                                 else "554 5.7.1 Sender address rejected: access denied")  # fmt: skip
                        smtp.refuse_senders(reply)
                        end = partial(smtp.refuse_senders, None)
                    outages.append(asyncio.create_task(_after(length, end)))
                    report.outage_seconds += length
                    return f"{kind} for {length:.0f} s"
                case _:
                    report.garbage += await _publish_garbage(mq.url, prefix, rng)
                    return "garbage published"

        outages: list[asyncio.Task[None]] = []
        relay_quiet_until = [0.0]
        batch = 0
        deck: list[str] = []
        fault_deadline = time.monotonic() + config.duration
        next_batch = 0.0
        next_fault = time.monotonic() + rng.uniform(*config.fault_every)
        # The run starts with the relay turning every recipient away as a relay that no
        # longer relays for us does ("554 5.7.1 <a@b>: Relay access denied", at RCPT TO):
        # from its first message, no lead may fail for it.
        length = min(max(config.duration / 20, 3.0), 120.0)
        smtp.refuse_recipients("554 5.7.1 <{}>: Relay access denied")
        outages.append(asyncio.create_task(_after(length, partial(smtp.refuse_recipients, None))))
        report.outage_seconds += length
        relay_quiet_until[0] = time.monotonic() + 3 * length
        print(f"  t=   0.0s relay denies every recipient for {length:.0f} s", flush=True)
        while time.monotonic() < fault_deadline:
            now = time.monotonic()
            if now >= next_batch:
                report.leads += await _retrying(partial(_load, pool, batch, config.leads_per_batch))
                batch += 1
                next_batch = now + config.batch_every
            if now >= next_fault:
                if not deck:  # every kind once per round, in a seeded order
                    deck = rng.sample(FAULTS, len(FAULTS))
                kind = deck.pop()
                what = await inject(kind)
                report.faults[kind] += 1
                print(f"  t={now - started:6.1f}s {what}", flush=True)
                next_fault = time.monotonic() + rng.uniform(*config.fault_every)
            await asyncio.sleep(0.2)
        stop_faults.set()
        await supervisor
        await asyncio.gather(*outages)  # every outage ends before the drain
        # Whatever a fault left stopped comes back; then everything drains.
        for key, p in fleet.procs.items():
            if p.poll() is not None:
                fleet.start(key)
        drained = await _wait_terminal(pool, config.drain_timeout)
        if not drained:
            report.failures.append(f"leads not terminal after {config.drain_timeout}s of drain")
        await asyncio.sleep(2)  # let last acks land
        codes = fleet.stop_all()
        bad = {k: c for k, c in codes.items() if c != 0}
        if bad:
            report.failures.append(f"daemons exited non-zero at the end: {bad}")
        await _check(pool, smtp, mq, prefix, opens, report)
        await pool.close()
    finally:
        if fleet is not None:
            fleet.stop_all()
        smtp.stop()
        await asyncio.to_thread(mq.destroy)
        pg.destroy()
    report.wall = time.monotonic() - started
    print(report.table(), flush=True)
    print(
        json.dumps(
            {
                "seed": report.seed,
                "duration": report.duration,
                "leads": report.leads,
                "faults": dict(report.faults),
                "smtp": dict(report.smtp),
                "db": report.db,
                "failures": report.failures,
                "logs": str(log_dir),
            }
        ),
        flush=True,
    )
    return report


async def _after(seconds: float, action: Callable[[], object]) -> None:
    await asyncio.sleep(seconds)
    await asyncio.to_thread(action)


async def _retrying(make: Callable[[], Awaitable[T]]) -> T:
    """The harness's own writes ride out the faults it injects."""
    for _ in range(60):
        try:
            return await make()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await asyncio.sleep(1)
    return await make()


async def _node_fault(mq: PrivateRabbitCluster, rng: random.Random) -> str:
    """One node of the cluster stopped (its app, or its VM killed) and started again; the
    others keep the quorum queue's majority meanwhile."""
    i = rng.randrange(len(mq.nodes))
    node = mq.nodes[i]
    if rng.random() < 0.5:
        await asyncio.to_thread(node.stop_app)
        await asyncio.sleep(rng.uniform(1, 6))
        await asyncio.to_thread(node.start_app)
        how = "stop_app/start_app"
    else:
        await asyncio.to_thread(mq.kill9, i)
        await asyncio.sleep(rng.uniform(1, 6))
        await asyncio.to_thread(mq.restart, i)
        how = "kill -9, started again"
    for _ in range(60):  # back in the cluster before the next fault may take another node
        if len(await asyncio.to_thread(mq.running)) == len(mq.nodes):
            break
        await asyncio.sleep(1)
    return f"rabbitmq node {i + 1} of {len(mq.nodes)}: {how}"


async def _publish_garbage(url: str, prefix: str, rng: random.Random) -> int:
    body, message_id = rng.choice(GARBAGE)
    for _ in range(30):
        try:
            conn = await open_connection(url, "fault-garbage")
            try:
                ch = await conn.channel(publisher_confirms=True)
                x = await ch.get_exchange(Names.from_prefix(prefix).exchange)
                await x.publish(
                    aio_pika.Message(
                        body, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                    ),
                    routing_key=ROUTING_KEY,
                )
                return 1
            finally:
                await conn.close()
        except (OSError, aio_pika.exceptions.AMQPError):
            await asyncio.sleep(1)
    return 0


async def _wait_terminal(pool: asyncpg.Pool, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = await _retrying(
            lambda: pool.fetchval(
                "SELECT count(*) FROM leads WHERE status NOT IN ('completed', 'stopped', 'failed')"
            )
        )
        if left == 0:
            return True
        await asyncio.sleep(1)
    return False


async def _check(  # noqa: PLR0917
    pool: asyncpg.Pool,
    smtp: HostileSmtp,
    mq: PrivateRabbit | PrivateRabbitCluster,
    prefix: str,
    opens: datetime,
    report: Report,
) -> None:
    fail = report.failures.append
    copies = smtp.copies
    report.smtp.update(smtp.handler.counts)
    by_id = Counter(c.message_id for c in copies)
    twice = [m for m, n in by_id.items() if n > 1]
    if twice:
        fail(f"{len(twice)} (lead, step) accepted twice by the server, e.g. {twice[:3]}")

    rows = await pool.fetch("SELECT message_id, status, sender_id FROM deliveries")
    status = {r["message_id"]: r["status"] for r in rows}
    sent = {m for m, s in status.items() if s == "sent"}
    unknown = {m for m, s in status.items() if s == "unknown"}
    acked = {c.message_id for c in copies if c.acked}
    dropped = {c.message_id for c in copies if not c.acked}
    report.db.update(
        {
            "deliveries sent": len(sent),
            "deliveries unknown": len(unknown),
            "unknown, server had it (acked)": len(unknown & acked),
            "unknown, server had it (reply dropped)": len(unknown & dropped),
            "unknown, never reached the server": len(unknown - acked - dropped),
        }
    )
    if sent - acked:
        fail(f"{len(sent - acked)} deliveries 'sent' the server never accepted")
    if acked - sent - unknown:
        fail(f"{len(acked - sent - unknown)} accepted messages with no sent/unknown delivery")
    if dropped - unknown:
        fail(f"{len(dropped - unknown)} dropped-reply messages not recorded as unknown")

    counts: dict[str, int] = {
        r[0]: r[1] for r in await pool.fetch("SELECT status, count(*) FROM leads GROUP BY status")
    }
    report.db.update({f"leads {k}": v for k, v in counts.items()})
    if set(counts) - {"completed", "stopped", "failed"}:
        fail(f"leads not terminal: {counts}")
    ev: dict[str, int] = {
        r[0]: r[1] for r in await pool.fetch("SELECT type, count(*) FROM events GROUP BY type")
    }
    if ev.get("sent", 0) != len(sent):
        fail(f"{ev.get('sent', 0)} 'sent' events for {len(sent)} sent deliveries")
    if ev.get("send_ambiguous", 0) != len(unknown):
        fail(f"{ev.get('send_ambiguous', 0)} 'send_ambiguous' events for {len(unknown)} unknown")
    unpublished = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    if unpublished:
        fail(f"{unpublished} outbox rows never published")
    bounced = await pool.fetchval(
        "SELECT count(*) FROM leads WHERE email LIKE 'bounce%' AND status <> 'failed'"
    )
    if bounced:
        fail(f"{bounced} bounce leads did not fail")
    # Relay outages spend no attempt and fail no lead: their messages were held by the
    # account's circuit, never retried or failed for the relay's fault.
    spent = await pool.fetchval(
        """SELECT count(*) FROM events WHERE type IN ('retry_scheduled', 'failed')
           AND (data->>'smtp_code' IN ('530', '554')
                OR data->>'error' ILIKE '%Connect call failed%'
                OR data->>'error' ILIKE '%Connection refused%')"""
    )
    others_failed = await pool.fetchval(
        "SELECT count(*) FROM leads WHERE email NOT LIKE 'bounce%' AND status = 'failed'"
    )
    held = await pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'deferred' AND data->>'reason' = 'smtp_circuit_open'"
    )
    report.db["held by the SMTP circuit"] = held
    report.db["SMTP circuit opened"] = ev.get("smtp_circuit_open", 0)
    if spent:
        fail(f"{spent} attempts retried or failed for the relay's own failure")
    if others_failed:
        fail(f"{others_failed} leads failed that should have been sent")
    if report.outage_seconds and not ev.get("smtp_circuit_open"):
        fail("relay outages happened and no circuit opened")

    # Pacing: the hand-offs booked under the sender's lock are at least the gap apart, and
    # so are the copies at the server, less the hand-off jitter of a loaded machine.
    booked = [
        r["at"].timestamp()
        for r in await pool.fetch(
            "SELECT at FROM sender_sends s JOIN senders p ON p.id = s.sender_id"
            " WHERE p.email = 'paced@acme.test' ORDER BY at"
        )
    ]
    paced = sorted(c.at for c in copies if c.mail_from == "paced@acme.test")
    report.db["paced sender: hand-offs booked"] = len(booked)
    report.db["paced sender: copies at the server"] = len(paced)
    for label, times, slack in (("booked", booked, 0.0), ("server", paced, HANDOFF_JITTER)):
        gaps = [b - a for a, b in itertools.pairwise(times)]
        if gaps:
            report.db[f"paced sender: min gap {label} (ms)"] = round(min(gaps) * 1000)
            if min(gaps) < PACED_GAP - slack:
                fail(f"paced sender's {label} gap {min(gaps):.3f}s < {PACED_GAP}s")
    # Every message a paced sender handed over was booked in its ledger first.
    paced_sent, paced_booked = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM deliveries d JOIN senders s ON s.id = d.sender_id
                   WHERE s.paced AND d.status IN ('sent', 'unknown')),
                  (SELECT count(*) FROM sender_sends)"""
    ) or (0, 0)
    report.db["paced senders: sent or unknown"] = paced_sent
    report.db["paced senders: hand-offs booked"] = paced_booked
    if paced_booked < paced_sent:
        fail(f"{paced_sent - paced_booked} paced hand-offs without a booking")
    # Windows: nothing of the windowed sequence before it opened.
    early = [c for c in copies if c.rcpt.startswith("w") and c.at < opens.timestamp()]
    if early:
        fail(f"{len(early)} windowed messages arrived before the window opened")

    # The guard: every pause it made was resumed (nothing waits on a paused sender).
    report.db["guard: sender pauses"] = await pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'sender_paused'"
    )
    still = await pool.fetch("SELECT email, paused_reason FROM senders WHERE status = 'paused'")
    if still:
        fail(f"{len(still)} senders still paused: {[tuple(r) for r in still]}")

    names = Names.from_prefix(prefix)
    conn = await open_connection(mq.url, "fault-check")
    try:
        ch = await conn.channel()
        q = await ch.declare_queue(names.queue, passive=True)
        dq = await ch.declare_queue(names.dead_queue, passive=True)
        left, report.dead_letters = (
            q.declaration_result.message_count,
            dq.declaration_result.message_count or 0,
        )
    finally:
        await conn.close()
    if left:
        fail(f"{left} messages left on the send queue")
    if report.dead_letters != report.garbage:
        fail(f"{report.dead_letters} dead letters for {report.garbage} garbage messages")


def main(argv: list[str]) -> int:
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m tests.fault")
    parser.add_argument("--seed", type=int, default=random.SystemRandom().randrange(1, 10**6))
    parser.add_argument("--duration", type=float, default=1200)
    parser.add_argument(
        "--cluster", action="store_true", help="a 3-node RabbitMQ cluster; a node at a time fails"
    )
    args = parser.parse_args(argv)
    report = asyncio.run(run(Config(seed=args.seed, duration=args.duration, cluster=args.cluster)))
    return 0 if not report.failures else 1
