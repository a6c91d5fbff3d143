"""What is going on: per sequence, per sender, and in the pipeline. Served by `ops status`,
GET /api/v1/status, the Prometheus gauges and the console, all from `read`.

Nothing here counts the leads table: lead counts and activity are maintained by triggers
(migration 0008) and folded now and then; the pipeline's counts stop at `COUNT_CAP` rows; the
queue depths come from the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiormq
import asyncpg
import structlog
from aio_pika.abc import AbstractRobustConnection

from broker.topology import Names, open_connection
from core import events, pacing
from core.clock import utcnow
from core.lifecycle import Status
from db import counts, leads, outbox, partitions
from db.pool import Conn
from db.queries import COUNT_CAP, query

log = structlog.get_logger()

# A replica that has not reported for this long is not listed as live.
REPLICA_SILENCE = timedelta(seconds=60)
# The outcomes a sequence's last day counts (core/events.py: what the count trigger keys by).
OUTCOMES = events.OUTCOMES
# The console's chart: hours on each side of now, and how many due leads its forecast reads.
CHART_HOURS = 48
FORECAST_CAP = 50_000


def _q(name: str) -> str:
    return query("status", name)


@dataclass(frozen=True, slots=True)
class SequenceStatus:
    id: int
    name: str
    status: str
    kind: str
    leads: dict[str, int]  # by lead status (every status, zero included)
    last_24h: dict[str, int]  # by outcome (OUTCOMES)


@dataclass(frozen=True, slots=True)
class SenderStatus:
    id: int
    email: str
    name: str | None
    paced: bool
    hourly_limit: int | None
    daily_limit: int | None
    daily_new_limit: int | None
    min_gap_seconds: int
    sent_last_hour: int
    sent_last_day: int
    next_free_slot: datetime | None  # paced senders only; None = now or unpaced
    account: str  # its own SMTP account's URL, or "relay"
    circuit: str  # closed, open or half_open (core/circuit.py)
    circuit_reason: str
    circuit_retry_at: datetime | None
    # The reputation guard (core/guard.py): active or paused, why, when a pause for blocks
    # probes; in a warm-up, daily_limit is today's cap and daily_target the one it grows to.
    status: str = "active"
    paused_reason: str | None = None
    probe_at: datetime | None = None
    daily_target: int | None = None
    # Providers that asked it to slow down, and until when it waits for each.
    backoffs: dict[str, datetime] = field(default_factory=dict)
    # Its caps per recipient provider, and its hand-offs to each in the last 24 hours.
    provider_caps: dict[str, int] = field(default_factory=dict)
    provider_day: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Replica:
    service: str
    host: str
    pid: int
    version: str
    started_at: datetime
    last_progress: datetime
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class Pipeline:
    due: int  # leads of active sequences due now, up to COUNT_CAP
    due_capped: bool
    lag_seconds: float  # how long the oldest due lead has waited (0: none due)
    queued: int  # leads handed to the pipeline (an outbox row or a message), up to COUNT_CAP
    outbox_unpublished: int  # up to COUNT_CAP
    outbox_oldest_seconds: float  # age of the oldest row the pump should have published
    queue_messages: int | None  # ready in the send queue; None: broker not reachable
    dead_letters: int | None
    replicas: list[Replica] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Overview:
    at: datetime
    sequences: list[SequenceStatus]
    senders: list[SenderStatus]
    pipeline: Pipeline
    # Events before this instant went with their months (EVENT_RETENTION_DAYS); the lead
    # counts and the activity counts are kept apart and hold them all. None: none went.
    events_kept_since: datetime | None = None


class QueueDepths:
    """Message counts of the send and dead-letter queues, over one long-lived connection
    (reopened after a failure); None while the broker cannot be reached."""

    def __init__(self, url: str, names: Names, timeout: float = 2.0) -> None:
        self.url = url
        self.names = names
        self.timeout = timeout
        self._connection: AbstractRobustConnection | None = None
        self._lock = asyncio.Lock()

    async def _count(self) -> tuple[int, int]:
        if self._connection is None or self._connection.is_closed:
            self._connection = await open_connection(self.url, "email-scheduler-status")
        channel = await self._connection.channel()
        try:
            send = await channel.declare_queue(self.names.queue, passive=True)
            dead = await channel.declare_queue(self.names.dead_queue, passive=True)
            return (
                send.declaration_result.message_count or 0,
                dead.declaration_result.message_count or 0,
            )
        finally:
            await channel.close()

    async def read(self) -> tuple[int | None, int | None]:
        async with self._lock:
            try:
                return await asyncio.wait_for(self._count(), self.timeout)
            except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
                log.warning("queue_depth_unavailable", error=str(exc) or type(exc).__name__)
                await self.close()
                return None, None

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), self.timeout)


async def pipeline(conn: Conn, depths: QueueDepths | None, now: datetime) -> Pipeline:
    backlog = await leads.backlog(conn, now)
    unpublished, oldest = await outbox.backlog(conn, now)
    queue, dead = await depths.read() if depths is not None else (None, None)
    replicas = [Replica(**dict(r)) for r in await conn.fetch(_q("replicas"), now - REPLICA_SILENCE)]
    return Pipeline(
        due=backlog.due,
        due_capped=backlog.due >= COUNT_CAP,
        lag_seconds=max(backlog.lag_s, 0.0),
        queued=backlog.queued,
        outbox_unpublished=unpublished,
        outbox_oldest_seconds=max(oldest, 0.0),
        queue_messages=queue,
        dead_letters=dead,
        replicas=replicas,
    )


def _sender(row: dict[str, object], sent: tuple[int, int], now: datetime) -> SenderStatus:
    rules = pacing.Pacing.from_mapping(row, now)
    sends: list[datetime] = list(row["sends"])  # type: ignore[call-overload]
    if row["paced"]:
        hour = sum(1 for at in sends if at > now - pacing.HOUR)
        day = len(sends)
        slot = pacing.next_slot(
            rules,
            now,
            sends=sends,
            first_touches=list(row["first_touches"]),  # type: ignore[call-overload]
            gap_until=row["next_send_at"],  # type: ignore[arg-type]
        )
        free = slot if slot > now else None
    else:
        hour, day = sent
        free = None
    return SenderStatus(
        id=row["id"],  # type: ignore[arg-type]
        email=row["email"],  # type: ignore[arg-type]
        name=row["name"],  # type: ignore[arg-type]
        paced=bool(row["paced"]),
        hourly_limit=rules.hourly_limit,
        daily_limit=rules.daily_limit,
        daily_new_limit=rules.daily_new_limit,
        min_gap_seconds=rules.min_gap_seconds,
        sent_last_hour=hour,
        sent_last_day=day,
        next_free_slot=free,
        account=row["account"],  # type: ignore[arg-type]
        circuit=row["circuit"],  # type: ignore[arg-type]
        circuit_reason=row["circuit_reason"],  # type: ignore[arg-type]
        status=row["status"],  # type: ignore[arg-type]
        paused_reason=row["paused_reason"],  # type: ignore[arg-type]
        probe_at=row["guard_probe_at"],  # type: ignore[arg-type]
        daily_target=row["daily_limit"],  # type: ignore[arg-type]
        backoffs={
            p: datetime.fromisoformat(str(at))
            for p, at in row["backoffs"].items()  # type: ignore[attr-defined]
        },
        provider_caps=row["provider_caps"],  # type: ignore[arg-type]
        provider_day=row["provider_day"] or {},  # type: ignore[arg-type]
        circuit_retry_at=row["circuit_retry_at"],  # type: ignore[arg-type]
    )


async def read(conn: Conn, depths: QueueDepths | None, now: datetime) -> Overview:
    """Everything `ops status` shows, as of `now`."""
    await counts.fold(conn, now)
    hour = now.replace(minute=0, second=0, microsecond=0)
    by_status: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(Status, 0))
    for r in await conn.fetch(_q("lead_counts")):
        by_status[r["sequence_id"]][r["status"]] = r["n"]
    day: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
    sent_by_sender: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    # Hour buckets: "the last day" is this hour and the 23 before it; "the last hour" this
    # hour and the one before it (for unpaced senders, which keep no ledger).
    for r in await conn.fetch(_q("activity"), hour - timedelta(hours=23), hour - pacing.HOUR):
        if r["type"] in OUTCOMES and r["sequence_id"] is not None:
            day[r["sequence_id"]][r["type"]] += r["n"]
        if r["type"] == "sent" and r["sender_id"] is not None:
            sent_by_sender[r["sender_id"]][0] += r["recent"]
            sent_by_sender[r["sender_id"]][1] += r["n"]
    sequences = [
        SequenceStatus(
            id=r["id"],
            name=r["name"],
            status=r["status"],
            kind=r["kind"],
            leads={str(k): v for k, v in by_status[r["id"]].items()},
            last_24h=day[r["id"]],
        )
        for r in await conn.fetch(_q("sequences"))
    ]
    senders = [
        _sender(dict(r), (sent_by_sender[r["id"]][0], sent_by_sender[r["id"]][1]), now)
        for r in await conn.fetch(_q("senders"), now)
    ]
    return Overview(
        now, sequences, senders, await pipeline(conn, depths, now),
        await partitions.kept_since(conn),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Chart:
    """Sends per hour for the past CHART_HOURS (this hour last) and, for the next
    CHART_HOURS (this hour first), the leads of active sequences that can go in each: due
    then, and within their paced sender's hourly and daily caps (what a cap holds back moves
    to the next hours). A lead's due time carries its window once the scheduler has looked
    at it."""

    now_hour: datetime
    past: list[dict[str, int]]  # per hour: sent, failed, bounced, replied
    due: list[int]
    due_capped: bool  # the forecast stopped at FORECAST_CAP leads


_CHARTED = tuple(
    o.value for o in (events.Outcome.SENT, events.Outcome.FAILED, events.Outcome.BOUNCED,
                      events.Outcome.REPLIED)
)  # fmt: skip


async def chart(conn: Conn, now: datetime) -> Chart:
    hour = now.replace(minute=0, second=0, microsecond=0)
    first = hour - timedelta(hours=CHART_HOURS - 1)
    past = [dict.fromkeys(_CHARTED, 0) for _ in range(CHART_HOURS)]
    kinds = list(past[0])
    for r in await conn.fetch(_q("hourly"), first, kinds):
        i = int((r["hour"] - first).total_seconds() // 3600)
        if 0 <= i < CHART_HOURS:
            past[i][r["type"]] += r["n"]
    by_sender: dict[int | None, list[int]] = defaultdict(lambda: [0] * CHART_HOURS)
    total = 0
    end = hour + timedelta(hours=CHART_HOURS)
    for r in await conn.fetch(_q("forecast"), hour, end, FORECAST_CAP):
        i = int((r["hour"] - hour).total_seconds() // 3600)
        if 0 <= i < CHART_HOURS:
            by_sender[r["sender_id"]][i] += r["n"]
        total += r["n"]
    paced = {r["id"]: r for r in await conn.fetch(_q("paced_rules"), now)}
    due = [0] * CHART_HOURS
    for sender_id, hours in by_sender.items():
        rules = paced.get(sender_id) if sender_id is not None else None
        spread = pacing.spread_due(
            hours,
            pacing.Pacing.from_mapping(rules, now) if rules is not None else None,
            sent_today=rules["sent_day"] if rules is not None else 0,
        )
        due = [a + b for a, b in zip(due, spread, strict=True)]
    return Chart(hour, past, due, total >= FORECAST_CAP)


async def funnel(
    conn: Conn, sequence_id: int, positions: list[int]
) -> list[tuple[int, dict[str, int]]]:
    """A sequence's events at each of its steps (by position), since it began."""
    out = {p: dict.fromkeys(OUTCOMES, 0) for p in positions}
    for r in await conn.fetch(_q("funnel"), sequence_id):
        if r["step"] in out and r["type"] in OUTCOMES:
            out[r["step"]][r["type"]] += r["n"]
    return sorted(out.items())


class Shared:
    """One status read shared by every caller of a process (API requests, the metrics
    scrape, every open console page): a read younger than `max_age` is reused, and callers
    that arrive while one is running wait for it instead of starting their own."""

    def __init__(self, pool: asyncpg.Pool, depths: QueueDepths | None, max_age: float = 1.0):
        self.pool = pool
        self.depths = depths
        self.max_age = max_age
        self._last: tuple[float, Overview] | None = None
        self._lock = asyncio.Lock()
        self._chart: tuple[float, Chart] | None = None
        self._chart_lock = asyncio.Lock()

    async def chart(self) -> Chart:
        """The console's chart, shared like the overview (one read per `max_age`)."""
        async with self._chart_lock:
            mono = time.monotonic()
            if self._chart is not None and mono - self._chart[0] < max(self.max_age, 2.0):
                return self._chart[1]
            async with self.pool.acquire() as conn:
                view = await chart(conn, utcnow())
            self._chart = (time.monotonic(), view)
            return view

    async def get(self) -> Overview:
        async with self._lock:
            mono = time.monotonic()
            if self._last is not None and mono - self._last[0] < self.max_age:
                return self._last[1]
            async with self.pool.acquire() as conn:
                view = await read(conn, self.depths, utcnow())
            self._last = (time.monotonic(), view)
            return view
