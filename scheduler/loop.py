"""The scheduler loop: claim due leads in batches, plan each, write the outcome atomically."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
import structlog

from core import pacing, planner
from core.clock import utcnow
from core.lifecycle import every, wait_first
from core.settings import SchedulerSettings
from db import events, leads
from db.events import Event
from db.pool import TRANSIENT_DB_ERRORS, Conn, Listener
from scheduler.assign import assign

log = structlog.get_logger()
LEADS_CHANNEL = "email_scheduler_leads"


@dataclass(slots=True)
class BatchResult:
    claimed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


def _forecast(state: leads.PacingState, now: datetime) -> pacing.Forecast:
    """A sender's forecast with its in-flight messages already booked."""
    forecast = pacing.Forecast(
        state.rules, list(state.sends), list(state.first_touches), state.gap_until
    )
    for _ in range(state.queued_followups):
        forecast.take(now, first_touch=False)
    for _ in range(state.queued_first):
        forecast.take(now, first_touch=True)
    return forecast


class Scheduler:
    """Plans due leads; `run_once` does one batch, `run` loops until stopped."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: SchedulerSettings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.clock = clock
        self.plan_settings = planner.Settings(
            message_id_domain=settings.message_id_domain,
            unsubscribe_mailto=settings.unsubscribe_mailto,
            unsubscribe_url=settings.unsubscribe_url,
            unsubscribe_secret=settings.unsubscribe_secret.get_secret_value(),
        )
        self.totals: Counter[str] = Counter()

    async def run_once(self, now: datetime | None = None) -> BatchResult:
        """Claim and plan one batch of due leads at `now`; return what happened."""
        now = now or self.clock()
        result = BatchResult()
        logs: list[tuple[str, dict[str, object]]] = []
        async with self.pool.acquire() as conn, conn.transaction():
            due = await leads.claim_due(conn, now, self.settings.scheduler_batch_size)
            if not due:
                return result
            due = await self._assign_senders(conn, due, now)
            updates: list[leads.LeadUpdate] = []
            outbox: list[leads.OutboxRow] = []
            evs: list[Event] = []
            planned = [(lead, planner.plan(lead, now, self.plan_settings)) for lead in due]
            planned = await self._pace(conn, planned, now)
            for lead, decision in planned:
                step = lead.current_step
                match decision:
                    case planner.Enqueue(job):
                        updates.append(leads.LeadUpdate(lead.id, "queued", attempt_inc=1))
                        outbox.append(
                            leads.OutboxRow(lead.id, job.step, job.attempt, job.model_dump_json())
                        )
                        evs.append(Event(lead.id, step, "queued", {"attempt": job.attempt}))
                        logs.append(
                            (
                                "lead_queued",
                                {
                                    "lead_id": lead.id,
                                    "step": step,
                                    "attempt": job.attempt,
                                    "sender_id": job.sender_id,
                                },
                            )
                        )
                        result.outcomes["queued"] += 1
                    case planner.Wait(until, reason):
                        updates.append(leads.LeadUpdate(lead.id, "active", next_run_at=until))
                        evs.append(
                            Event(
                                lead.id,
                                step,
                                "deferred",
                                {"reason": reason, "until": until.isoformat()},
                            )
                        )
                        logs.append(
                            (
                                "lead_deferred",
                                {
                                    "lead_id": lead.id,
                                    "step": step,
                                    "reason": reason,
                                    "until": until,
                                },
                            )
                        )
                        result.outcomes["deferred"] += 1
                    case planner.Stop(reason):
                        updates.append(leads.LeadUpdate(lead.id, "stopped"))
                        evs.append(Event(lead.id, step, "stopped", {"reason": reason}))
                        logs.append(
                            ("lead_stopped", {"lead_id": lead.id, "step": step, "reason": reason})
                        )
                        result.outcomes["stopped"] += 1
                    case planner.Fail(reason, error):
                        updates.append(leads.LeadUpdate(lead.id, "failed"))
                        evs.append(
                            Event(lead.id, step, "failed", {"reason": reason, "error": error})
                        )
                        logs.append(
                            (
                                "lead_failed",
                                {
                                    "lead_id": lead.id,
                                    "step": step,
                                    "reason": reason,
                                    "error": error,
                                },
                            )
                        )
                        result.outcomes["failed"] += 1
                    case planner.Complete():
                        updates.append(leads.LeadUpdate(lead.id, "completed"))
                        evs.append(Event(lead.id, step, "completed"))
                        logs.append(("lead_completed", {"lead_id": lead.id, "step": step}))
                        result.outcomes["completed"] += 1
            await leads.apply(conn, updates, outbox, now)
            await events.insert_many(conn, evs, now)
            result.claimed = len(due)
        # Logged after the commit: a line means the change happened.
        for name, fields in logs:
            if name == "lead_failed":
                log.warning(name, **fields)
            else:
                log.info(name, **fields)
        self.totals.update(result.outcomes)
        return result

    async def _pace(
        self,
        conn: Conn,
        planned: list[tuple[planner.DueLead, planner.Decision]],
        now: datetime,
    ) -> list[tuple[planner.DueLead, planner.Decision]]:
        """Queue only what pacing lets go within the lookahead; the rest waits for its slot.

        Leads come follow-ups first, so those take a scarce sender's slots before new leads.
        Messages already in flight take the first slots. Forecast slots are spread like the
        sends they stand for, so deferred leads come back one by one, not all at once.
        """
        jobs = [d.job for _, d in planned if isinstance(d, planner.Enqueue)]
        if not jobs:
            return planned
        senders = {
            st.sender_id: _forecast(st, now)
            for st in await leads.pacing_state(conn, sorted({j.sender_id for j in jobs}), now)
        }
        rate = None
        if self.settings.global_rate_per_second is not None:
            per_second = self.settings.global_rate_per_second
            next_at, in_flight = await leads.global_pace_state(conn)
            # Messages in flight take the first slots.
            start = max(now, next_at or now) + timedelta(seconds=in_flight / per_second)
            rate = pacing.RateForecast(per_second, start)
        if not senders and rate is None:
            return planned
        horizon = now + timedelta(seconds=self.settings.pacing_lookahead_seconds)
        paced: list[tuple[planner.DueLead, planner.Decision]] = []
        for lead, decision in planned:
            if isinstance(decision, planner.Enqueue):
                job = decision.job
                forecast = senders.get(job.sender_id)
                slot = now if forecast is None else forecast.take(now, first_touch=job.first_touch)
                reason = "pacing"
                if rate is not None:
                    global_slot = rate.take(slot)
                    if global_slot > slot:
                        slot, reason = global_slot, "global_rate"
                if slot > horizon:
                    paced.append((lead, planner.Wait(slot, reason)))
                    continue
            paced.append((lead, decision))
        return paced

    async def _assign_senders(
        self, conn: Conn, due: list[planner.DueLead], now: datetime
    ) -> list[planner.DueLead]:
        missing = [(d.id, d.sequence_id) for d in due if d.sender_id is None]
        if not missing:
            return due
        candidates = await leads.sender_candidates(conn, sorted({s for _, s in missing}), now)
        chosen = assign(missing, candidates)
        await leads.assign_senders(conn, {k: v.sender_id for k, v in chosen.items()}, now)
        for lead_id, sender in chosen.items():
            log.info("lead_sender_assigned", lead_id=lead_id, sender_id=sender.sender_id)
        return [
            dataclasses.replace(d, sender_id=c.sender_id, sender_email=c.email, sender_name=c.name)
            if (c := chosen.get(d.id)) is not None
            else d
            for d in due
        ]

    async def rescue_once(self, now: datetime | None = None) -> int:
        """Re-enqueue leads whose in-flight message was lost; return how many."""
        now = now or self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            rescued = await leads.rescue_stuck(
                conn, now, self.settings.rescue_after_seconds, self.settings.scheduler_batch_size
            )
            await events.insert_many(
                conn,
                [Event(r.lead_id, r.step, "rescued", {"attempt": r.attempt}) for r in rescued],
                now,
            )
        for r in rescued:
            log.warning("lead_rescued", lead_id=r.lead_id, step=r.step, attempt=r.attempt)
        return len(rescued)

    async def _sleep_for(self) -> float:
        async with self.pool.acquire() as conn:
            nxt = await leads.next_due_at(conn)
        timeout = self.settings.scheduler_poll_seconds
        if nxt is not None:
            timeout = min(timeout, (nxt - self.clock()).total_seconds())
        return max(timeout, 0.0)

    async def _loop(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        backoff = 0.2
        last_rescue = 0.0
        while not stop.is_set():
            try:
                mono = time.monotonic()
                if mono - last_rescue >= min(60.0, self.settings.rescue_after_seconds / 4):
                    last_rescue = mono
                    await self.rescue_once()
                result = await self.run_once()
                backoff = 0.2
                if result.claimed >= self.settings.scheduler_batch_size:
                    continue  # more is due right now
                if await wait_first(stop, wake, await self._sleep_for()):
                    # Woken by a change: let the changes around it land too, so one batch
                    # (one transaction) plans them all instead of one batch each.
                    await wait_first(stop, None, self.settings.scheduler_linger_seconds)
            except TRANSIENT_DB_ERRORS as exc:
                log.warning("database_unavailable", error=str(exc), retry_in_s=backoff)
                await wait_first(stop, None, backoff)
                backoff = min(backoff * 2, 10.0)

    async def _summary(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                b = await leads.backlog(conn, self.clock())
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("summary_unavailable", error=str(exc))
            return
        log.info(
            "scheduler_summary",
            due=b.due,
            queued=b.queued,
            lag_s=round(b.lag_s, 3),
            **{f"total_{k}": v for k, v in sorted(self.totals.items())},
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set; side tasks failing stops the daemon loudly."""
        listener = Listener(self.settings.database_url, [LEADS_CHANNEL])
        log.info("scheduler_started", batch_size=self.settings.scheduler_batch_size)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(listener.run(stop))
            tg.create_task(every(self.settings.summary_interval_seconds, stop, self._summary))
            tg.create_task(self._loop(stop, listener.event))
