"""The reputation guard in the database: each sender's window of hand-off outcomes
(db/functions/guard.sql), its pause, its resume, and the probes of pauses for blocks. The
rules are core/guard.py's; the worker and the inbox report what happened (`observe`), which
judges the senders concerned and pauses those whose window says so.

A pause is a row change (`senders.status`), a `sender_paused` event and a NOTIFY on
`email_scheduler_senders`, so every worker stops handing that sender's messages over at once
(`Paused`); the scheduler plans none of its leads until it is resumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from core import guard
from core.events import EventType
from db import events
from db.events import Event
from db.pool import Conn

log = structlog.get_logger()

CHANNEL = "email_scheduler_senders"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One hand-off of `sender_id` for a lead's step, and what it says about the sender."""

    sender_id: int
    lead_id: int
    step: int
    kind: guard.Kind


@dataclass(frozen=True, slots=True)
class Paused:
    sender_id: int
    crossing: guard.Crossing
    probe_at: datetime | None


async def observe(
    conn: Conn, outcomes: Sequence[Outcome], policy: guard.Policy, now: datetime
) -> list[Paused]:
    """Record hand-offs' outcomes (one statement for the batch), judge their senders'
    windows, pause those over a threshold; the senders paused by this call."""
    if not outcomes or not policy.enabled:
        return []
    rows = await conn.fetch(
        "SELECT * FROM guard_note($1, $2, $3, $4, $5, $6)",
        [o.sender_id for o in outcomes],
        [o.lead_id for o in outcomes],
        [o.step for o in outcomes],
        [o.kind.value for o in outcomes],
        now,
        policy.limits.window,
    )
    return await _judge(conn, rows, policy, now)


async def amend(
    conn: Conn,
    changes: Sequence[tuple[int, int, guard.Kind]],
    policy: guard.Policy,
    now: datetime,
) -> list[Paused]:
    """A later verdict on hand-offs, (lead, step, kind) each: a bounce or complaint the
    inbox heard. Judges and pauses as `observe` does."""
    if not changes or not policy.enabled:
        return []
    rows = await conn.fetch(
        "SELECT * FROM guard_amend($1, $2, $3, $4)",
        [c[0] for c in changes],
        [c[1] for c in changes],
        [c[2].value for c in changes],
        policy.limits.window,
    )
    return await _judge(conn, rows, policy, now)


async def _judge(
    conn: Conn, rows: Sequence[Any], policy: guard.Policy, now: datetime
) -> list[Paused]:
    paused: list[Paused] = []
    for row in rows:
        if row["status"] != "active":
            continue
        health = guard.Health(
            handoffs=row["handoffs"],
            hard_bounces=row["hard_bounces"],
            complaints=row["complaints"],
            blocks=row["blocks"],
        )
        crossing = guard.judge(
            health, policy.limits.for_sender(row), probation=row["guard_probation"]
        )
        if crossing is not None:
            done = await pause(conn, row["sender_id"], crossing, policy, now)
            if done is not None:
                paused.append(done)
        elif row["guard_probation"] and row["delivered"]:
            # The probe got through: the pause for blocks is over, its cooldown forgotten.
            await conn.execute(
                """UPDATE senders SET guard_probation = false, guard_cooldown_seconds = NULL
                   WHERE id = $1""",
                row["sender_id"],
            )
            log.info("sender_probe_passed", sender_id=row["sender_id"])
    return paused


async def pause(
    conn: Conn, sender_id: int, crossing: guard.Crossing, policy: guard.Policy, now: datetime
) -> Paused | None:
    """Pause an active sender for `crossing` (None if it was not active): a block-rate pause
    gets its probe time."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT status, guard_cooldown_seconds FROM senders WHERE id = $1 FOR UPDATE",
            sender_id,
        )
        if row is None or row["status"] != "active":
            return None
        probe_at = wait = None
        if crossing.rate is guard.Rate.BLOCK:
            last = row["guard_cooldown_seconds"]
            wait = guard.cooldown(
                timedelta(seconds=last) if last is not None else None, policy.first_cooldown
            )
            probe_at = now + wait
        await conn.execute(
            """UPDATE senders SET status = 'paused', paused_reason = $2, paused_at = $3,
                   guard_probe_at = $4, guard_cooldown_seconds = $5, guard_probation = false
               WHERE id = $1""",
            sender_id,
            crossing.reason(),
            now,
            probe_at,
            None if wait is None else int(wait.total_seconds()),
        )
        data = {
            "sender_id": sender_id,
            "rate": crossing.rate.value,
            "value": round(crossing.value, 4),
            "threshold": crossing.threshold,
            "window": crossing.handoffs,
            "probe_at": probe_at,
        }
        await events.insert(conn, Event(None, None, EventType.SENDER_PAUSED, data), now)
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(sender_id))
    log.warning("sender_paused", sender_id=sender_id, reason=crossing.reason(), probe_at=probe_at)
    return Paused(sender_id, crossing, probe_at)


async def resume(
    conn: Conn, sender_id: int, *, by: str, now: datetime, probation: bool = False
) -> bool:
    """Resume a paused sender (False if it was not paused): its window starts anew, its
    waiting leads are planned again. `probation`: a probe after a pause for blocks."""
    async with conn.transaction():
        done = await conn.fetchval(
            """UPDATE senders SET status = 'active', paused_reason = NULL, paused_at = NULL,
                   guard_probe_at = NULL, guard_probation = $2,
                   guard_cooldown_seconds = CASE WHEN $2 THEN guard_cooldown_seconds END,
                   guard_since = coalesce((SELECT max(id) FROM sender_outcomes
                                           WHERE sender_id = $1), 0)
               WHERE id = $1 AND status = 'paused'
               RETURNING id""",
            sender_id,
            probation,
        )
        if done is None:
            return False
        data = {"sender_id": sender_id, "by": by, "probe": probation}
        await events.insert(conn, Event(None, None, EventType.SENDER_RESUMED, data), now)
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(sender_id))
    log.info("sender_resumed", sender_id=sender_id, by=by, probe=probation)
    return True


async def probe_due(conn: Conn, now: datetime) -> list[int]:
    """Resume, in probation, the senders paused for blocks whose cooldown is over."""
    due = [
        r["id"]
        for r in await conn.fetch(
            """SELECT id FROM senders WHERE status = 'paused' AND guard_probe_at <= $1
               ORDER BY id""",
            now,
        )
    ]
    return [s for s in due if await resume(conn, s, by="probe", now=now, probation=True)]


async def paused_ids(conn: Conn) -> set[int]:
    return {r["id"] for r in await conn.fetch("SELECT id FROM senders WHERE status = 'paused'")}
