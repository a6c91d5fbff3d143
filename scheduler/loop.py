"""The scheduler loop: claim due leads in batches, plan each, write the outcome atomically."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

import asyncpg
import structlog

from core import pacing, planner
from core.clock import utcnow
from core.lifecycle import Status
from db import counts, events, leads
from db import guard as db_guard
from db.events import Event
from db.pool import TRANSIENT_DB_ERRORS, Conn, Listener
from runtime import metrics
from runtime.daemon import every, repeat, wait_first
from runtime.health import Heartbeat
from runtime.settings import SchedulerSettings
from scheduler import planning
from scheduler.assign import assign

log = structlog.get_logger()
LEADS_CHANNEL = "email_scheduler_leads"


_Line = tuple[str, dict[str, object]]


def _emit(lines: list[_Line]) -> None:
    for name, fields in lines:
        if name == "lead_failed":
            log.warning(name, **fields)
        else:
            log.info(name, **fields)


@dataclass(slots=True)
class BatchResult:
    claimed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


def _forecast(state: leads.PacingState, now: datetime) -> pacing.Forecast:
    """A sender's forecast with its in-flight messages, and its waiting leads at their due
    times, already booked."""
    forecast = pacing.Forecast(
        state.rules, list(state.sends), list(state.first_touches), state.gap_until
    )
    for _ in range(state.queued_followups):
        forecast.take(now, first_touch=False)
    for _ in range(state.queued_first):
        forecast.take(now, first_touch=True)
    forecast.book(state.waiting, state.waiting_first)
    return forecast


class Scheduler:
    """Plans due leads; `run_once` does one batch, `run` loops until stopped."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: SchedulerSettings,
        clock: Callable[[], datetime] = utcnow,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.pool = pool
        self.heartbeat = heartbeat
        self.settings = settings
        self.clock = clock
        self.plan_settings = planner.Settings(
            message_id_domain=settings.message_id_domain,
            message_id_key=settings.message_id_secret.get_secret_value().encode(),
            unsubscribe_mailto=settings.unsubscribe_mailto,
            unsubscribe_url=settings.unsubscribe_url,
            unsubscribe_secret=settings.unsubscribe_secret.get_secret_value(),
            render_max_bytes=settings.render_max_bytes,
        )
        self.totals: Counter[str] = Counter()
        self._last_rescue = -float("inf")

    async def run_once(self, now: datetime | None = None) -> BatchResult:
        """Claim and plan one batch of due leads at `now`; return what happened.

        Whatever one lead, step or sequence row holds, it fails that lead alone: a batch
        that cannot be read or written as a whole (a row the driver cannot decode, a value
        the database refuses) is done again one lead at a time, and a lead that fails on its
        own is failed with the reason.
        """
        now = now or self.clock()
        result = BatchResult()
        lines: list[_Line] = []
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await leads.claim_due_ids(conn, now, self.settings.scheduler_batch_size)
            if not claimed:
                return result
            try:
                async with conn.transaction():
                    due = await leads.load_due(conn, [lead_id for lead_id, _ in claimed])
                    await self._plan_and_write(conn, due, now, result, lines)
            except TRANSIENT_DB_ERRORS:
                raise
            except Exception as exc:
                log.error("batch_failed", error=f"{type(exc).__name__}: {exc}"[:500])  # noqa: TRY400
                result, lines = BatchResult(), []
                for lead_id, step in claimed:
                    await self._one_lead(
                        conn, lead_id=lead_id, step=step, now=now, result=result, lines=lines
                    )
        _emit(lines)  # after the commit: a line means the change happened
        self.totals.update(result.outcomes)
        metrics.PLAN_BATCH.observe(len(claimed))
        for outcome, n in result.outcomes.items():
            metrics.PLANNED.labels(outcome).inc(n)
        return result

    async def _one_lead(
        self,
        conn: Conn,
        *,
        lead_id: int,
        step: int,
        now: datetime,
        result: BatchResult,
        lines: list[_Line],
    ) -> None:
        """Plan one locked lead on its own; if even that fails, fail the lead with why."""
        mine: list[_Line] = []
        try:
            async with conn.transaction():
                due = await leads.load_due(conn, [lead_id])
                await self._plan_and_write(conn, due, now, result, mine)
            lines.extend(mine)
        except TRANSIENT_DB_ERRORS:
            raise
        except Exception as exc:
            result.claimed += 1
            why = {"reason": "invalid_data", "error": f"{type(exc).__name__}: {exc}"[:500]}
            await leads.apply(conn, [leads.LeadUpdate(lead_id, Status.FAILED)], [], now)
            await events.insert_many(conn, [Event(lead_id, step, "failed", why)], now)
            lines.append(("lead_failed", {"lead_id": lead_id, "step": step, **why}))
            result.outcomes["failed"] += 1

    async def _plan_and_write(
        self,
        conn: Conn,
        due: list[planner.DueLead],
        now: datetime,
        result: BatchResult,
        lines: list[_Line],
    ) -> None:
        """Plan `due` (locked by the caller) and write the outcome in the caller's transaction."""
        due = await self._assign_senders(conn, due, now)
        decisions = await planning.plan(
            due, now, self.plan_settings, self.settings.render_timeout_seconds
        )
        due = due[: len(decisions)]  # the rest stays due: the next batch plans it
        planned = await self._pace(conn, list(zip(due, decisions, strict=True)), now)
        updates: list[leads.LeadUpdate] = []
        outbox: list[leads.OutboxRow] = []
        evs: list[Event] = []
        for lead, decision in planned:
            step = lead.current_step
            ids: dict[str, object] = {
                "lead_id": lead.id,
                "step": step,
                "sequence_id": lead.sequence_id,
                "sender_id": lead.sender_id,
            }
            match decision:
                case planner.Enqueue(job):
                    updates.append(leads.LeadUpdate(lead.id, Status.QUEUED, attempt_inc=1))
                    outbox.append(
                        leads.OutboxRow(lead.id, job.step, job.attempt, job.model_dump_json())
                    )
                    evs.append(Event(lead.id, step, "queued", {"attempt": job.attempt}))
                    lines.append(
                        (
                            "lead_queued",
                            {**ids, "attempt": job.attempt, "message_id": job.message_id},
                        )
                    )
                case planner.Wait(until, reason):
                    updates.append(leads.LeadUpdate(lead.id, Status.ACTIVE, next_run_at=until))
                    evs.append(
                        Event(
                            lead.id,
                            step,
                            "deferred",
                            {"reason": reason, "until": until.isoformat()},
                        )
                    )
                    lines.append(("lead_deferred", {**ids, "reason": reason, "until": until}))
                case planner.Stop(reason):
                    updates.append(leads.LeadUpdate(lead.id, Status.STOPPED))
                    evs.append(Event(lead.id, step, "stopped", {"reason": reason}))
                    lines.append(("lead_stopped", {**ids, "reason": reason}))
                case planner.Fail(reason, error):
                    updates.append(leads.LeadUpdate(lead.id, Status.FAILED))
                    evs.append(Event(lead.id, step, "failed", {"reason": reason, "error": error}))
                    lines.append(("lead_failed", {**ids, "reason": reason, "error": error}))
                case planner.Complete():
                    updates.append(leads.LeadUpdate(lead.id, Status.COMPLETED))
                    evs.append(Event(lead.id, step, "completed"))
                    lines.append(("lead_completed", ids))
            result.outcomes[lines[-1][0].removeprefix("lead_")] += 1
        await leads.apply(conn, updates, outbox, now)
        await events.insert_many(conn, evs, now)
        result.claimed += len(due)

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
                # A lead due at the slot it was deferred to keeps its place; one due afresh
                # goes around the slots leads waiting already hold (unless it can go now).
                slot = (
                    now
                    if forecast is None
                    else forecast.take(
                        now, first_touch=job.first_touch, soon=horizon, keep_clear=not lead.booked
                    )
                )
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

    async def _turn(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Rescue when due, one batch, then wait unless the batch was full."""
        mono = time.monotonic()
        if mono - self._last_rescue >= min(60.0, self.settings.rescue_after_seconds / 4):
            self._last_rescue = mono
            await self.rescue_once()
        result = await self.run_once()
        if result.claimed >= self.settings.scheduler_batch_size:
            return  # more is due right now
        if await wait_first(stop, wake, await self._sleep_for()):
            # Woken by a change: let the changes around it land too, so one batch (one
            # transaction) plans them all instead of one batch each.
            await wait_first(stop, None, self.settings.scheduler_linger_seconds)

    async def _summary(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                b = await leads.backlog(conn, self.clock())
                await counts.fold(conn, self.clock())
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("summary_unavailable", error=str(exc))
            return
        metrics.SCHEDULER_LAG.set(b.lag_s)
        log.info(
            "scheduler_summary",
            due=b.due,
            queued=b.queued,
            lag_s=round(b.lag_s, 3),
            **{f"total_{k}": v for k, v in sorted(self.totals.items())},
        )

    async def probe_senders(self) -> None:
        """Resume, for a probe, the senders the guard paused for blocks whose cooldown is
        over (db/guard.py); their waiting leads are planned again."""
        try:
            async with self.pool.acquire() as conn:
                await db_guard.probe_due(conn, self.clock())
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("probe_unavailable", error=str(exc))

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set; side tasks failing stops the daemon loudly."""
        listener = Listener(self.settings.database_url, [LEADS_CHANNEL])
        log.info("scheduler_started", batch_size=self.settings.scheduler_batch_size)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(listener.run(stop))
            tg.create_task(every(self.settings.summary_interval_seconds, stop, self._summary))
            probe_every = min(5.0, self.settings.guard_cooldown_seconds / 4)
            tg.create_task(every(probe_every, stop, self.probe_senders))
            tg.create_task(
                repeat(
                    stop,
                    partial(self._turn, stop, listener.event),
                    ((TRANSIENT_DB_ERRORS, "database_unavailable"),),
                    self.heartbeat,
                )
            )
