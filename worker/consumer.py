"""The worker: one message at a time per slot; claim, send, record, then ack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

import asyncpg
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from pydantic import ValidationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_any,
    wait_exponential_jitter,
)

from core import guard, providers
from core import message as email
from core.attempts import RetryRules, Unknown, after_failure
from core.backoff import throttled
from core.circuit import Circuit
from core.circuit import Wait as CircuitWait
from core.clock import utcnow
from core.providers import Provider
from core.schemas import JobRef, SendJob
from db import deliveries, ledger, outbox
from db import guard as db_guard
from db.events import Event
from db.pool import TRANSIENT_DB_ERRORS, Listener
from runtime import metrics
from runtime.batch import MicroBatcher
from runtime.daemon import every, wait_first
from runtime.health import Heartbeat
from runtime.settings import WorkerSettings
from runtime.startup import until_set
from worker.claim import Claim, Claimer, Incoming, Rate
from worker.providers import Lookup
from worker.relays import Relays
from worker.signing import Signer
from worker.smtp import SendError, SmtpPool

log = structlog.get_logger()
R = TypeVar("R")


class InvalidMessage(ValueError):
    """A queue message that is not a valid send job; it goes to the dead-letter queue."""


_OUTBOX_ID = re.compile(r"^[0-9]{1,19}$")


@dataclass(frozen=True, slots=True)
class Received:
    """A queue message that passed validation: the outbox row it names, and the job its
    body carries when it is of the earlier form (checked against that row)."""

    ref: JobRef
    outbox_id: int
    redelivered: bool
    carried: SendJob | None = None


def _invalid(exc: ValidationError) -> InvalidMessage:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return InvalidMessage(f"{where}: {first['msg']} ({exc.error_count()} errors)")


def parse(message: AbstractIncomingMessage) -> Received:
    """Validate a queue message, every field; raise InvalidMessage naming what is wrong."""
    mid = message.message_id or ""
    if not _OUTBOX_ID.match(mid) or int(mid) >= 2**63 or int(mid) == 0:
        raise InvalidMessage(f"message_id must be the outbox id, got {mid!r}")
    try:
        version = json.loads(message.body).get("v")
    except (ValueError, AttributeError) as exc:
        raise InvalidMessage(f"body: Invalid JSON ({type(exc).__name__})") from exc
    try:
        if version == 1:  # published before the broker carried references only
            job = SendJob.model_validate_json(message.body)
            ref = JobRef(lead_id=job.lead_id, step=job.step, attempt=job.attempt)
            return Received(ref, int(mid), bool(message.redelivered), job)
        ref = JobRef.model_validate_json(message.body)
    except ValidationError as exc:
        raise _invalid(exc) from exc
    return Received(ref, int(mid), bool(message.redelivered))


def trusted_job(got: Received, row: outbox.Stored | None) -> SendJob | str:
    """The job to send for `got`, read from its outbox row; or why the message is refused."""
    if row is None:
        return f"no outbox row {got.outbox_id} (never written, or pruned)"
    ref = got.ref
    if (row.lead_id, row.step, row.attempt) != (ref.lead_id, ref.step, ref.attempt):
        return (
            f"names lead {ref.lead_id} step {ref.step} attempt {ref.attempt}, but outbox row"
            f" {row.id} is lead {row.lead_id} step {row.step} attempt {row.attempt}"
        )
    try:
        job = SendJob.model_validate_json(row.payload)
    except ValidationError as exc:
        return f"outbox row {row.id} holds no valid job: {_invalid(exc)}"
    if got.carried is not None and got.carried != job:
        return f"the job it carries differs from outbox row {row.id}"
    return job


def _log_events(evs: list[Event], job: SendJob, **fields: object) -> None:
    """One line per event; ids of the lead, its sequence and sender on each, the Message-ID
    only on lines of the job's own step, one `attempt` field."""
    for e in evs:
        level = "warning" if e.type in ("failed", "send_ambiguous", "stopped") else "info"
        data = dict(e.data)
        line: dict[str, object] = {
            "lead_id": e.lead_id,
            "step": e.step,
            "sequence_id": job.sequence_id,
            "sender_id": job.sender_id,
            **fields,
        }
        if "attempts" in data:
            line["attempt"] = data.pop("attempts")
        data.pop("message_id", None)
        line.update(data)
        if e.step == job.step:
            line["message_id"] = job.message_id
        getattr(log, level)(f"lead_{e.type}", **line)


class Worker:
    """Sends what the queue holds; `handle` processes one message end to end."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        smtp: SmtpPool | Relays,
        settings: WorkerSettings,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        *,
        heartbeat: Heartbeat | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.pool = pool
        self.heartbeat = heartbeat
        self.signer = signer
        self._started: dict[int, float] = {}  # in-flight messages: when each was taken
        self.smtp = smtp
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.lease_seconds = deliveries.lease_for(settings.smtp_timeout_seconds)
        self.claimer = Claimer(
            pool,
            clock=clock,
            policy=settings.ambiguous_send_policy,
            lease_seconds=self.lease_seconds,
            rng=self.rng,
            rate=Rate(
                max_wait_seconds=settings.pacing_max_wait_seconds,
                global_per_second=settings.global_rate_per_second,
            ),
        )
        self.retry_rules = RetryRules(
            max_attempts=settings.send_max_attempts,
            base_seconds=settings.retry_base_seconds,
            max_seconds=settings.retry_max_seconds,
            ambiguous=settings.ambiguous_send_policy,
        )
        self.counts: Counter[str] = Counter()
        self.circuits: dict[str, Circuit] = {}  # per account: core/circuit.py
        self._working: set[str] = set()  # accounts seen working since their circuit closed
        self.in_flight = 0
        self._stop = asyncio.Event()
        # Messages that arrive together share one claim and one record transaction.
        self._claims = MicroBatcher(self._claim_batch, max_size=settings.worker_batch_size)
        self._records = MicroBatcher(self._record_batch, max_size=settings.worker_batch_size)
        # The reputation guard (core/guard.py, db/guard.py): the senders it has paused, kept
        # current by NOTIFY (`watch_senders`); their messages are held, not handed over.
        self.guard = settings.guard()
        self.paused: set[int] = set()
        # Outcomes for the guard, written by `report_outcomes` off the send path (one call
        # for all that gathered since the last), or inline when it does not run.
        self._outcomes: list[db_guard.Outcome] = []
        self._outcomes_ready = asyncio.Event()
        self._reporting = False
        # Recipient providers and each sender's backoffs at them (core/providers.py).
        self.lookup = Lookup(settings.dns_nameservers)
        self.backoffs = providers.Backoffs(
            first_wait=timedelta(seconds=settings.provider_backoff_seconds)
        )

    def _db_retry(self) -> AsyncRetrying:
        # Keep trying while the database is away, but give up at shutdown: the unacked
        # message then goes back to the queue and nothing is lost.
        return AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT_DB_ERRORS),
            wait=wait_exponential_jitter(multiplier=0.2, max=5),
            stop=stop_any(stop_after_delay(600), until_set(self._stop)),
            reraise=True,
        )

    async def handle(self, message: AbstractIncomingMessage) -> str:
        """Process one message; return what happened (for tests and counters)."""
        result = await self._handle(message)
        metrics.MESSAGES.labels(result).inc()
        return result

    async def _handle(self, message: AbstractIncomingMessage) -> str:
        try:
            got = parse(message)
        except InvalidMessage as exc:
            await self._reject(message, str(exc))
            return "rejected"
        taken = await self._claims.submit(got)
        if isinstance(taken, str):
            await self._reject(message, taken, lead_id=got.ref.lead_id)
            return "rejected"
        job, claim = taken
        bound = log.bind(
            lead_id=job.lead_id,
            step=job.step,
            outbox_id=got.outbox_id,
            message_id=job.message_id,
            sender_id=job.sender_id,
            sequence_id=job.sequence_id,
        )
        _log_events(claim.events, job, outbox_id=got.outbox_id)
        if not claim.send:
            if not claim.events:
                bound.info("message_skipped", reason=claim.reason)
            await message.ack()
            return claim.reason or "skipped"
        assert claim.token is not None
        not_before = None
        if claim.not_before is not None:
            # A booked pacing slot a moment away: hand over at it, never before.
            wait = (claim.not_before - self.clock()).total_seconds()
            if wait > 0:
                not_before = asyncio.get_running_loop().time() + wait

        # One lookup of the account the message leaves through: its pool and its circuit.
        relay: SmtpPool | SendError
        try:
            relay = await self.smtp.pool_for(job.sender_id)
            key = relay.key
        except SendError as exc:
            relay, key = exc, f"sender:{job.sender_id}"
        circuit = self.circuits.get(key)
        if circuit is None:
            first_wait = timedelta(seconds=self.settings.smtp_circuit_seconds)
            circuit = self.circuits[key] = Circuit(first_wait=first_wait)
        hold_until: datetime | None = None
        outcome: SendError | None = None
        duration_ms = 0.0
        handed_off = False
        gate_now = self.clock()
        hold_reason = "smtp circuit open"
        sender = job.sender_id or 0
        provider = await self.lookup.provider(job.to_address.rpartition("@")[2])
        backed_off = self.backoffs.held_until(sender, provider, gate_now)
        if job.sender_id in self.paused:
            # Paused after this message was claimed: it waits with its lead, unsent.
            hold_until, hold_reason = gate_now, "sender paused"
        elif backed_off is not None:
            # This provider asked this sender to slow down: its mail to it waits, the rest
            # of the sender's goes on.
            hold_until, hold_reason = backed_off, f"provider backoff ({provider})"
        else:
            match circuit.before_send(gate_now):
                case CircuitWait(until):
                    hold_until = self._spread(until, circuit)
                case _:
                    outcome, duration_ms = (
                        (relay, 0.0)
                        if isinstance(relay, SendError)
                        else await self._send(job, not_before, relay)
                    )
                    handed_off = not isinstance(relay, SendError)
                    if outcome is not None and throttled(outcome.failure):
                        hold_until = await self._throttled(sender, provider, outcome)
                        hold_reason = f"provider backoff ({provider})"
                    else:
                        if outcome is None and self.backoffs.delivered(sender, provider):
                            await self._retrying(
                                partial(deliveries.end_backoff, self.pool, sender, provider)
                            )
                        hold_until = await self._after_send(key, circuit, job, outcome)
        evs = await self._records.submit(
            _Outcome(job, claim.token, claim.attempts, outcome, hold_until, claim.not_before,
                     handed_off=handed_off, hold_reason=hold_reason)
        )  # fmt: skip
        metrics.SMTP_SECONDS.observe(duration_ms / 1000)
        metrics.SENDS.labels(evs[0].type if evs else "claim_lost", str(job.sender_id or "")).inc()
        if evs is None:
            bound.warning("delivery_claim_lost", attempt=claim.attempts, duration_ms=duration_ms)
        else:
            _log_events(evs, job, outbox_id=got.outbox_id, duration_ms=duration_ms)
        await message.ack()
        result = "held" if hold_until is not None else "sent" if outcome is None else "failed"
        self.counts[result] += 1
        return result

    async def _throttled(self, sender: int, provider: Provider, outcome: SendError) -> datetime:
        """A provider said "try later / rate limited": that sender->provider pair backs off
        (this message held until then, no attempt spent); not the account's circuit."""
        now = self.clock()
        until = self.backoffs.throttled(sender, provider, now)
        reason = outcome.failure.message[:300]
        log.warning("provider_backoff", sender_id=sender, provider=str(provider),
                    until=until, error=reason)  # fmt: skip
        await self._retrying(
            partial(
                deliveries.set_backoff,
                self.pool,
                sender,
                provider,
                until=until,
                reason=reason,
                now=now,
            )
        )
        return until

    async def _after_send(
        self, key: str, circuit: Circuit, job: SendJob, outcome: SendError | None
    ) -> datetime | None:
        """Tell the account's circuit what happened; the time to hold the message until
        when it is not the lead's fault (no attempt spent)."""
        now = self.clock()
        if outcome is None:
            verdict, closed = None, circuit.succeeded(now)
        else:
            verdict = circuit.failed(outcome.failure, job.to_address, now)
            closed = verdict.closed  # a failure after DATA: the account works
        if verdict is None or closed:
            # The first success of an account here (or the first since its circuit opened)
            # closes its circuit for every worker.
            if closed or key not in self._working:
                self._working.add(key)
                if await self._retrying(partial(deliveries.close_circuit, self.pool, key, now)):
                    log.info("smtp_circuit_closed", account=key)
            return None
        if verdict.opened:
            self._working.discard(key)
            log.warning("smtp_circuit_open", account=key, error=circuit.reason,
                        retry_at=circuit.retry_at)  # fmt: skip
            await self._retrying(
                partial(deliveries.set_circuit, self.pool, key, state="open", reason=circuit.reason,
                        retry_at=circuit.retry_at, now=now, event="smtp_circuit_open")
            )  # fmt: skip
        if not verdict.hold:
            return None
        return self._spread(max(verdict.until or circuit.retry_at or now, now), circuit)

    def _spread(self, until: datetime, circuit: Circuit) -> datetime:
        """Held messages come back spread over half a wait after `until`, not all at the
        instant the probe goes: the first of them is the probe, the rest find it answered."""
        return until + timedelta(seconds=self.rng.uniform(0, circuit.wait.total_seconds() / 2))

    async def _send(
        self, job: SendJob, not_before: float | None, relay: SmtpPool
    ) -> tuple[SendError | None, float]:
        """Build and hand over one message; return the failure (or None) and SMTP time in ms."""
        data = email.build(
            email.Email(
                from_address=job.from_address,
                from_name=job.from_name,
                to_address=job.to_address,
                subject=job.subject,
                text=job.text,
                html=job.html,
                message_id=job.message_id,
                date=self.clock(),
                in_reply_to=job.in_reply_to,
                references=job.references,
                extra_headers=_list_headers(job, self.settings.list_id_domain),
            )
        )
        if self.signer is not None:
            data = await self.signer.sign(job.from_address, data)
        try:
            accepted = await relay.send(
                job.from_address, job.to_address, data, not_before=not_before
            )
        except SendError as exc:
            return exc, exc.duration_ms
        return None, accepted.duration_ms

    async def _retrying(self, fn: Callable[[], Awaitable[R]]) -> R:
        """`fn()` (one transaction), retried while the database is away."""
        async for attempt in self._db_retry():
            with attempt:
                return await fn()
        raise AssertionError("unreachable")

    async def _claim_batch(self, items: list[Received]) -> list[tuple[SendJob, Claim] | str]:
        """Read each message's job from the outbox, then claim what may go to SMTP now.

        A message the outbox does not bear out is refused (a string saying why); so is one
        whose claim fails on its own when the batch could not be claimed together.
        """
        metrics.CLAIM_BATCH.observe(len(items))
        rows = await self._retrying(partial(self._jobs, [it.outbox_id for it in items]))
        out: list[tuple[SendJob, Claim] | str] = []
        trusted: list[tuple[int, Incoming]] = []
        for it in items:
            job = trusted_job(it, rows.get(it.outbox_id))
            out.append(job if isinstance(job, str) else "")
            if isinstance(job, SendJob):
                trusted.append((len(out) - 1, Incoming(job, it.outbox_id, it.redelivered)))
        # The recipients' providers, for the senders' caps there (cached; DNS at once).
        found = await asyncio.gather(
            *(self.lookup.provider(inc.job.to_address.rpartition("@")[2]) for _, inc in trusted)
        )
        trusted = [
            (i, replace(inc, provider=str(p))) for (i, inc), p in zip(trusted, found, strict=True)
        ]
        if not trusted:
            return out
        incoming = [inc for _, inc in trusted]
        claims: list[Claim | str]
        try:
            claims = list(await self.claimer.claim(incoming, self._retrying))
        except TRANSIENT_DB_ERRORS:
            raise
        except Exception as exc:
            # One message the database refuses must not hold back the others.
            log.error("claim_batch_failed", error=repr(exc)[:500], size=len(incoming))  # noqa: TRY400
            claims = []
            for inc in incoming:
                try:
                    (alone,) = await self.claimer.claim([inc], self._retrying)
                    claims.append(alone)
                except TRANSIENT_DB_ERRORS:
                    raise
                except Exception as alone_exc:
                    claims.append(f"claim failed: {type(alone_exc).__name__}: {alone_exc}"[:500])
        for (i, inc), claim in zip(trusted, claims, strict=True):
            out[i] = claim if isinstance(claim, str) else (inc.job, claim)
        return out

    async def _jobs(self, outbox_ids: list[int]) -> dict[int, outbox.Stored]:
        async with self.pool.acquire() as conn:
            return await outbox.jobs(conn, outbox_ids)

    async def _record_batch(self, items: list[_Outcome]) -> list[list[Event] | None]:
        """Record what SMTP said for each claim: the messages that left in one transaction,
        each failure in its own; each retried on its own while the database is away."""
        metrics.RECORD_BATCH.observe(len(items))
        now = self.clock()
        results: list[list[Event] | None] = [None] * len(items)
        left: list[tuple[int, deliveries.Finished]] = []
        for i, it in enumerate(items):
            if it.hold_until is not None:
                reason = it.error.failure.message if it.error else it.hold_reason
                results[i] = await self._retrying(
                    partial(
                        deliveries.record_hold,
                        self.pool, it.job, it.token, until=it.hold_until, reason=reason, now=now,
                        booked_at=it.booked_at,
                        why=_requeue_reason(it.hold_reason),
                    )
                )  # fmt: skip
                continue
            if it.error is None:
                left.append((i, deliveries.Finished(it.job, it.token, "sent", smtp_code=250)))
                continue
            failure = it.error.failure
            decision = after_failure(failure, it.attempts, self.retry_rules, now, self.rng)
            if isinstance(decision, Unknown):
                left.append(
                    (i, deliveries.Finished(it.job, it.token, "unknown", error=failure.message))
                )
                continue
            results[i] = await self._retrying(
                partial(
                    deliveries.record_failure,
                    self.pool,
                    it.job,
                    it.token,
                    decision,
                    now=now,
                    smtp_code=failure.code,
                    error=failure.message,
                )
            )
        if left:
            finished = [f for _, f in left]
            done = await self._retrying(
                partial(deliveries.record_finished, self.pool, finished, now=now)
            )
            for (i, _), evs in zip(left, done, strict=True):
                results[i] = evs
        for it in items:
            kind = guard.kind_of(it.error.failure if it.error else None)
            if it.handed_off and kind is not None and it.job.sender_id is not None:
                self._outcomes.append(
                    db_guard.Outcome(it.job.sender_id, it.job.lead_id, it.job.step, kind)
                )
        if self._outcomes:
            if self._reporting:
                self._outcomes_ready.set()
            else:
                await self._observe(now)
        return results

    async def report_outcomes(self, stop: asyncio.Event) -> None:
        """Give the guard the outcomes recorded meanwhile, one call at a time, off the send
        path (a message's ack does not wait for it)."""
        self._reporting = True
        try:
            while not stop.is_set():
                await wait_first(stop, self._outcomes_ready, 5.0)
                self._outcomes_ready.clear()
                if self._outcomes:
                    await self._observe(self.clock())
        finally:
            self._reporting = False
            if self._outcomes:
                await self._observe(self.clock())

    async def _observe(self, now: datetime) -> None:
        """Tell the guard what the hand-offs said about their senders (one call); a sender
        it pauses is held here at once, elsewhere by NOTIFY."""
        seen, self._outcomes = self._outcomes, []

        async def observe() -> list[db_guard.Paused]:
            async with self.pool.acquire() as conn:
                return await db_guard.observe(conn, seen, self.guard, now)

        try:
            for paused in await self._retrying(observe):
                self.paused.add(paused.sender_id)
        except Exception as exc:
            # The sends are recorded; only the guard misses these outcomes. Never fatal.
            log.error("guard_not_told", error=repr(exc)[:500], outcomes=len(seen))  # noqa: TRY400

    async def watch_senders(self, stop: asyncio.Event) -> None:
        """Keep `paused` current: read at start, again on each NOTIFY of a pause or resume
        (and every few seconds, should a notification be missed)."""
        listener = Listener(self.settings.database_url, [db_guard.CHANNEL])

        async def refresh() -> None:
            try:
                async with self.pool.acquire() as conn:
                    self.paused = await db_guard.paused_ids(conn)
            except TRANSIENT_DB_ERRORS as exc:
                log.warning("senders_not_read", error=str(exc))

        await refresh()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(listener.run(stop))
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(listener.event.wait(), 5.0)
                listener.event.clear()
                await refresh()

    async def _reject(
        self, message: AbstractIncomingMessage, reason: str, lead_id: int | None = None
    ) -> None:
        """Dead-letter a message we will not send, with an event saying why."""
        if lead_id is None:
            try:
                raw = json.loads(message.body)
                if isinstance(raw, dict) and type(raw.get("lead_id")) is int:
                    lead_id = raw["lead_id"] if 0 < raw["lead_id"] < 2**63 else None
            except ValueError:
                pass
        log.error("message_rejected", error=reason, outbox_id=message.message_id, lead_id=lead_id)
        try:
            await deliveries.record_rejected(
                self.pool,
                lead_id,
                {
                    "error": reason,
                    "outbox_id": message.message_id,
                    "body": message.body[:500].decode("utf-8", "replace"),
                },
                self.clock(),
            )
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("rejection_event_lost", error=str(exc))
        await message.reject(requeue=False)
        self.counts["rejected"] += 1

    async def consume(self, queue: AbstractQueue, stop: asyncio.Event) -> None:
        """Take messages until `stop`; then finish what is in flight."""
        self._stop = stop
        slots = asyncio.Semaphore(self.settings.prefetch)
        tasks: set[asyncio.Task[None]] = set()
        async with queue.iterator() as it:
            while not stop.is_set():
                await slots.acquire()
                get = asyncio.ensure_future(it.__anext__())
                halt = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({get, halt}, return_when=asyncio.FIRST_COMPLETED)
                halt.cancel()
                if get not in done:
                    get.cancel()
                    slots.release()
                    break
                try:
                    msg = get.result()
                except StopAsyncIteration:  # the channel closed under us
                    slots.release()
                    break
                task = asyncio.create_task(self._guarded(msg, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            # Stop taking work; in-flight sends finish and record before the channel closes.
            if tasks:
                log.info("draining", in_flight=len(tasks))
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _guarded(self, msg: AbstractIncomingMessage, slots: asyncio.Semaphore) -> None:
        self.in_flight += 1
        key = id(msg)
        self._started[key] = time.monotonic()
        try:
            await self.handle(msg)
        except Exception as exc:
            # An unexpected error must not kill the worker nor lose the message: hand it
            # back to the queue (the broker's delivery limit dead-letters a poison one).
            log.exception("message_failed", error=repr(exc), outbox_id=msg.message_id)
            try:
                await msg.nack(requeue=True)
            except Exception as nack_exc:  # the channel may be gone; the broker requeues then
                log.warning("nack_failed", error=repr(nack_exc))
        finally:
            self.in_flight -= 1
            self._started.pop(key, None)
            slots.release()

    async def _check_progress(self) -> None:
        """The worker makes progress while no message it holds has been in it longer than a
        claim lasts (an idle worker waits for messages; that is not being stuck)."""
        if self.heartbeat is None:
            return
        oldest = min(self._started.values(), default=None)
        if oldest is None or time.monotonic() - oldest < self.lease_seconds:
            self.heartbeat.beat()

    async def summary(self) -> None:
        log.info(
            "worker_summary",
            in_flight=self.in_flight,
            claim_batch_mean=self._claims.mean_size,
            record_batch_mean=self._records.mean_size,
            **{f"total_{k}": v for k, v in sorted(self.counts.items())},
        )

    async def run(self, queue: AbstractQueue, stop: asyncio.Event) -> None:
        """Consume until stopped, with a periodic summary and sender-ledger pruning."""
        warm = await self.smtp.warm(min(2, self.settings.worker_concurrency))
        log.info("worker_started", concurrency=self.settings.worker_concurrency, smtp_ready=warm)

        async def prune() -> None:
            try:
                async with self.pool.acquire() as conn:
                    await ledger.prune(conn, self.clock())
            except TRANSIENT_DB_ERRORS as exc:
                log.warning("prune_unavailable", error=str(exc))

        async with asyncio.TaskGroup() as tg:
            summary = tg.create_task(
                every(self.settings.summary_interval_seconds, stop, self.summary)
            )
            pruner = tg.create_task(every(3600.0, stop, prune))
            watcher = tg.create_task(self.watch_senders(stop))
            reporter = tg.create_task(self.report_outcomes(stop))
            progress = tg.create_task(every(1.0, stop, self._check_progress))
            await self.consume(queue, stop)
            summary.cancel()
            pruner.cancel()
            watcher.cancel()
            await reporter
            progress.cancel()


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What SMTP said for one claimed message (error None: accepted)."""

    job: SendJob
    token: uuid.UUID
    attempts: int
    error: SendError | None
    hold_until: datetime | None = None  # given back unsent, no attempt spent (circuit open)
    booked_at: datetime | None = None  # its pacing slot, released when it is held
    handed_off: bool = False  # it went to the SMTP server (what the guard judges)
    hold_reason: str = "smtp circuit open"


def _list_headers(job: SendJob, list_id_domain: str | None) -> list[tuple[str, str]]:
    # Every message of a sequence names it as its list (RFC 2919): mailbox providers and
    # filters group them, and list-aware rules expect it next to List-Unsubscribe.
    headers: list[tuple[str, str]] = []
    if job.sequence_id is not None:
        domain = list_id_domain or job.from_address.rpartition("@")[2]
        headers.append(("List-Id", f"<sequence-{job.sequence_id}.{domain}>"))
    if job.list_unsubscribe:
        headers.append(("List-Unsubscribe", job.list_unsubscribe))
        if job.list_unsubscribe_post:
            headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    return headers


def _requeue_reason(hold_reason: str) -> str:
    if hold_reason == "sender paused":
        return "sender_paused"
    if hold_reason.startswith("provider backoff"):
        return "provider_backoff"
    return "smtp_circuit_open"
