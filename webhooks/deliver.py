"""The webhooks deliverer: claim due deliveries of the webhook outbox, POST each signed as
Standard Webhooks says, record how each try ended.

- At least once, one id: a delivery is leased while its POST runs; a deliverer that dies
  leaves it due again when the lease ends, with the same `webhook-id`.
- One endpoint never holds up another: each has its own connections, at most
  WEBHOOK_ENDPOINT_CONCURRENCY POSTs in flight and WEBHOOK_BATCH_SIZE deliveries held (per
  deliverer); a claim takes no more of an endpoint's than it has room for, and the others'
  go on meanwhile.
- Only where it may: every new connection resolves the endpoint's host anew and connects
  to an address it checked (webhooks/http.py), so a name that resolves to a private
  address later (DNS rebinding) is refused then; redirects are not followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import random
import ssl
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

import asyncpg
import structlog
from yarl import URL

from core import webhooks as core
from core.clock import utcnow
from db import webhooks as db
from db.pool import TRANSIENT_DB_ERRORS, Listener
from runtime import metrics
from runtime.batch import MicroBatcher
from runtime.daemon import every, repeat
from runtime.health import Heartbeat
from runtime.settings import WebhookSettings
from webhooks.http import Origin, ProtocolError, TargetRefused

log = structlog.get_logger()
USER_AGENT = "email-scheduler-webhooks"
LEASE_MARGIN = timedelta(seconds=5)
LINGER_SECONDS = 0.01  # after a wake-up, for the rows written around it (one claim)
FINISH_LINGER_SECONDS = 0.02  # how tries ended, recorded together: one statement for many
BUSY_LINGER_SECONDS = 0.05  # the same while a stream of events goes on: fewer, fuller claims
KEEP_RESPONSE = 300  # characters of a failed answer kept in last_error


TRIES = {o: metrics.WEBHOOK_TRIES.labels(o) for o in ("delivered", "retry", "failed")}


class Deliverer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: WebhookSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        heartbeat: Heartbeat | None = None,
        rng: random.Random | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.clock = clock
        self.heartbeat = heartbeat
        self.rng = rng or random.Random()
        self.retry = core.Retry(
            hours=settings.webhook_retry_hours,
            first_seconds=settings.webhook_retry_first_seconds,
            max_seconds=settings.webhook_retry_max_seconds,
        )
        # Per endpoint: deliveries claimed whose POST has not ended (waiting or in flight),
        # and the gate that lets WEBHOOK_ENDPOINT_CONCURRENCY of them POST at once.
        self.held: dict[int, int] = defaultdict(int)
        self.gates: dict[int, asyncio.Semaphore] = {}
        # Per endpoint: its URL, and its connections or why it may not be posted to.
        self.targets: dict[int, tuple[str, tuple[URL, Origin] | str]] = {}
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.tasks: set[asyncio.Task[None]] = set()
        self.freed = asyncio.Event()  # an endpoint at its limit has room again
        self._finish = MicroBatcher(self._finish_batch, max_size=500, linger=FINISH_LINGER_SECONDS)
        self.delivered = 0

    def _target(self, c: db.Claimed) -> tuple[URL, Origin] | str:
        """The endpoint's URL and connections, or why it may not be posted to (both kept
        per endpoint while its URL stays the same)."""
        known = self.targets.get(c.endpoint_id)
        if known is not None and known[0] == c.url:
            return known[1]
        target: tuple[URL, Origin] | str
        try:
            url = URL(c.url)
            why = self._refused(url)
            target = why if why is not None else (url, self._new_origin(url))
        except ValueError as exc:
            target = str(exc)
        if known is not None and not isinstance(known[1], str):
            known[1][1].close()
        self.targets[c.endpoint_id] = (c.url, target)
        return target

    def _new_origin(self, url: URL) -> Origin:
        return Origin(
            url, allow_private=self.settings.webhook_allow_private, user_agent=USER_AGENT,
            ssl_context=self.ssl_context,
        )  # fmt: skip

    async def close(self, grace: float = 5.0) -> None:
        """POSTs under way get `grace` seconds to end; the rest are cut off, their leases
        left to end (they are tried again then, under the same webhook-id)."""
        if self.tasks:
            _, left = await asyncio.wait(set(self.tasks), timeout=grace)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
        for _, target in self.targets.values():
            if not isinstance(target, str):
                target[1].close()

    def _lease(self) -> timedelta:
        """Long enough for a whole claim to be POSTed, each try taking its full timeout."""
        rounds = math.ceil(
            self.settings.webhook_batch_size / self.settings.webhook_endpoint_concurrency
        )
        return timedelta(seconds=self.settings.webhook_timeout_seconds * rounds) + LEASE_MARGIN

    async def run_once(self) -> tuple[int, bool]:
        """Claim what is due (up to WEBHOOK_BATCH_SIZE held per endpoint) and start it;
        (how many were claimed, whether an endpoint's room was filled: more may be due)."""
        now = self.clock()
        size = self.settings.webhook_batch_size
        busy = {e: n for e, n in self.held.items() if n}
        async with self.pool.acquire() as conn:
            claimed = await db.claim(conn, now, size, busy, now + self._lease())
        for c in claimed:
            self.held[c.endpoint_id] += 1
            task = asyncio.create_task(self._deliver(c))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        # An endpoint given all the room it had may have more due.
        got: dict[int, int] = defaultdict(int)
        for c in claimed:
            got[c.endpoint_id] += 1
        filled = any(n >= size - busy.get(e, 0) for e, n in got.items())
        return len(claimed), filled

    async def _deliver(self, c: db.Claimed) -> None:
        gate = self.gates.get(c.endpoint_id)
        if gate is None:
            gate = self.gates[c.endpoint_id] = asyncio.Semaphore(
                self.settings.webhook_endpoint_concurrency
            )
        try:
            try:
                async with gate:
                    code, error = await self._post(c)
            finally:
                self._free(c.endpoint_id)  # its record may wait a moment: the room may not
            now = self.clock()
            if error is None:
                done = db.Finished(c.id, c.attempts, "delivered", None, code, None)
                metrics.WEBHOOK_SECONDS.observe((now - c.created_at).total_seconds())
                outcome = "delivered"
            else:
                again = self.retry.next_at(c.attempts, c.created_at, now, self.rng)
                status = "pending" if again is not None else "failed"
                done = db.Finished(c.id, c.attempts, status, again, code, error[:1000])
                outcome = "retry" if again is not None else "failed"
                log.warning(
                    "webhook_failed" if again is None else "webhook_retry",
                    delivery_id=c.id, endpoint_id=c.endpoint_id, attempt=c.attempts,
                    error=error[:300], next_attempt_at=again,
                )  # fmt: skip
            TRIES[outcome].inc()
            await self._finish.submit(done)
            if outcome == "delivered":
                self.delivered += 1
        except TRANSIENT_DB_ERRORS as exc:
            # Not recorded: the lease ends and the delivery is tried again (same id).
            log.warning("webhook_record_unavailable", delivery_id=c.id, error=str(exc))

    def _free(self, endpoint_id: int) -> None:
        """A POST ended: its endpoint has room for one more claimed delivery."""
        full = self.held[endpoint_id] >= self.settings.webhook_batch_size
        self.held[endpoint_id] -= 1
        if full:
            self.freed.set()

    async def _finish_batch(self, done: list[db.Finished]) -> list[None]:
        async with self.pool.acquire() as conn:
            await db.finish(conn, done, self.clock())
        return [None] * len(done)

    def _refused(self, url: URL) -> str | None:
        """Why the URL may not be posted to before any lookup (an address in it, plain
        http), else None; a name is checked by the resolver on each connection."""
        allow = self.settings.webhook_allow_private
        if url.scheme == "http" and not allow:
            return "plain http only with WEBHOOK_ALLOW_PRIVATE=true"
        try:
            literal = ipaddress.ip_address((url.host or "").strip("[]"))
        except ValueError:
            return None
        if not core.target_allowed(literal, allow_private=allow):
            return f"{literal} is not a public address (WEBHOOK_ALLOW_PRIVATE=true)"
        return None

    async def _post(self, c: db.Claimed) -> tuple[int | None, str | None]:
        """POST one delivery; (the answer's code, None) if delivered, else why not."""
        body = c.body.encode()
        stamp = int(time.time())
        mid = core.msg_id(c.id)
        target = self._target(c)
        if isinstance(target, str):
            return None, target
        url, origin = target
        request = origin.request(
            url,
            {
                "Content-Type": "application/json",
                "webhook-id": mid,
                "webhook-timestamp": str(stamp),
                "webhook-signature": core.sign(c.secret, mid, stamp, body),
            },
            body,
        )
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.webhook_timeout_seconds):
                answer = await origin.post(request, KEEP_RESPONSE)
        except TargetRefused as exc:
            return None, str(exc)
        except (ProtocolError, TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            took = time.perf_counter() - started
            what = "TimeoutError" if isinstance(exc, TimeoutError) else type(exc).__name__
            return None, f"{what} after {took:.1f} s: {exc}"[:1000]
        code = answer.status
        if 200 <= code < 300:
            return code, None
        if 300 <= code < 400:
            where = answer.location[:200]
            return code, f"HTTP {code}: redirects are not followed ({where})"
        return code, f"HTTP {code}: {answer.head.decode('utf-8', 'replace')}"

    async def _turn(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        claimed, filled = await self.run_once()
        if filled:
            return  # more may be due at once
        # All that was due is claimed (or there is no room): wait for new deliveries, room,
        # or the poll; then a moment for the rows written around the wake-up (longer while
        # events keep coming, so that a steady stream is claimed in fuller batches).
        waits = [asyncio.ensure_future(e.wait()) for e in (stop, wake, self.freed)]
        try:
            await asyncio.wait(
                waits, timeout=self.settings.webhook_poll_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
        finally:
            for w in waits:
                w.cancel()
            woken = wake.is_set()
            wake.clear()
            self.freed.clear()
        if woken and not stop.is_set():
            await asyncio.sleep(BUSY_LINGER_SECONDS if claimed > 1 else LINGER_SECONDS)

    async def _summary(self) -> None:
        now = self.clock()
        try:
            async with self.pool.acquire() as conn:
                pending, failed, oldest = await db.backlog(conn, now)
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("summary_unavailable", error=str(exc))
            return
        metrics.WEBHOOK_PENDING.set(pending)
        metrics.WEBHOOK_FAILED.set(failed)
        log.info(
            "webhooks_summary", delivered_total=self.delivered, pending=pending, failed=failed,
            oldest_pending_s=round(oldest, 3),
        )  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` (then `close`)."""
        listener = Listener(self.settings.database_url, [db.CHANNEL])
        log.info("webhooks_started", per_endpoint=self.settings.webhook_endpoint_concurrency)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(listener.run(stop))
            tg.create_task(every(self.settings.summary_interval_seconds, stop, self._summary))
            tg.create_task(
                repeat(
                    stop,
                    partial(self._turn, stop, listener.event),
                    ((TRANSIENT_DB_ERRORS, "database_unavailable"),),
                    self.heartbeat,
                )
            )
