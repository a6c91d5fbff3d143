"""The webhooks deliverer: claim due deliveries of the webhook outbox, POST each signed as
Standard Webhooks says, record how each try ended.

- At least once, one id: a delivery is leased while its POST runs; a deliverer that dies
  leaves it due again when the lease ends, with the same `webhook-id`.
- One endpoint never holds up another: each has its own connections, at most
  WEBHOOK_ENDPOINT_CONCURRENCY POSTs in flight and WEBHOOK_BATCH_SIZE deliveries held (per
  deliverer); a claim takes no more of an endpoint's than it has room for, and the others'
  go on meanwhile.
- Only where it may: every POST resolves the endpoint's host anew and connects to an
  address it checked (core/webhooks.py `target_allowed`), so a name that resolves to a
  private address later (DNS rebinding) is refused then; redirects are not followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import random
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

import aiohttp
import asyncpg
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
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

log = structlog.get_logger()
USER_AGENT = "email-scheduler-webhooks"
LEASE_MARGIN = timedelta(seconds=5)
LINGER_SECONDS = 0.01  # after a wake-up, for the rows written around it (one claim)
KEEP_RESPONSE = 300  # characters of a failed answer kept in last_error


class TargetRefused(Exception):
    """The endpoint's host resolves to an address a deliverer may not connect to."""


class CheckingResolver(AbstractResolver):
    """The system resolver, and every address it gives checked before a connection is
    made to one of them (each new connection asks anew: no DNS cache)."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        for r in found:
            address = ipaddress.ip_address(r["host"].split("%")[0])
            if not core.target_allowed(address, allow_private=self.allow_private):
                raise TargetRefused(
                    f"{host} resolves to {address}, not a public address"
                    " (WEBHOOK_ALLOW_PRIVATE=true)"
                )
        return found

    async def close(self) -> None:
        await self.inner.close()


class Deliverer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: WebhookSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        heartbeat: Heartbeat | None = None,
        rng: random.Random | None = None,
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
        # Per endpoint: deliveries claimed and not yet finished (waiting or in flight), and
        # the gate that lets WEBHOOK_ENDPOINT_CONCURRENCY of them POST at once.
        self.held: dict[int, int] = defaultdict(int)
        self.gates: dict[int, asyncio.Semaphore] = {}
        self.sessions: dict[int, aiohttp.ClientSession] = {}  # per endpoint: its connections
        self.tasks: set[asyncio.Task[None]] = set()
        self.freed = asyncio.Event()  # an endpoint at its limit has room again
        self._finish = MicroBatcher(self._finish_batch, max_size=500)
        self.delivered = 0

    def _session(self, endpoint_id: int) -> aiohttp.ClientSession:
        session = self.sessions.get(endpoint_id)
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=self.settings.webhook_endpoint_concurrency,
                resolver=CheckingResolver(self.settings.webhook_allow_private),
                use_dns_cache=False,
            )
            session = self.sessions[endpoint_id] = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_seconds),
                headers={"user-agent": USER_AGENT},
                trust_env=False,  # no proxy from the environment between us and the check
            )
        return session

    async def close(self, grace: float = 5.0) -> None:
        """POSTs under way get `grace` seconds to end; the rest are cut off, their leases
        left to end (they are tried again then, under the same webhook-id)."""
        if self.tasks:
            _, left = await asyncio.wait(set(self.tasks), timeout=grace)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
        for session in self.sessions.values():
            await session.close()

    def _lease(self) -> timedelta:
        """Long enough for a whole claim to be POSTed, each try taking its full timeout."""
        rounds = math.ceil(
            self.settings.webhook_batch_size / self.settings.webhook_endpoint_concurrency
        )
        return timedelta(seconds=self.settings.webhook_timeout_seconds * rounds) + LEASE_MARGIN

    async def run_once(self) -> int:
        """Claim what is due (up to WEBHOOK_BATCH_SIZE held per endpoint) and start it."""
        now = self.clock()
        busy = {e: n for e, n in self.held.items() if n}
        async with self.pool.acquire() as conn:
            claimed = await db.claim(
                conn, now, self.settings.webhook_batch_size, busy, now + self._lease()
            )
        for c in claimed:
            self.held[c.endpoint_id] += 1
            task = asyncio.create_task(self._deliver(c))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return len(claimed)

    async def _deliver(self, c: db.Claimed) -> None:
        gate = self.gates.get(c.endpoint_id)
        if gate is None:
            gate = self.gates[c.endpoint_id] = asyncio.Semaphore(
                self.settings.webhook_endpoint_concurrency
            )
        try:
            async with gate:
                code, error = await self._post(c)
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
            metrics.WEBHOOK_TRIES.labels(outcome).inc()
            await self._finish.submit(done)
            if outcome == "delivered":
                self.delivered += 1
        except TRANSIENT_DB_ERRORS as exc:
            # Not recorded: the lease ends and the delivery is tried again (same id).
            log.warning("webhook_record_unavailable", delivery_id=c.id, error=str(exc))
        finally:
            full = self.held[c.endpoint_id] >= self.settings.webhook_batch_size
            self.held[c.endpoint_id] -= 1
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
        try:
            url = URL(c.url)
        except ValueError as exc:
            return None, str(exc)
        if (why := self._refused(url)) is not None:
            return None, why
        headers = {
            "content-type": "application/json",
            "webhook-id": mid,
            "webhook-timestamp": str(stamp),
            "webhook-signature": core.sign(c.secret, mid, stamp, body),
        }
        started = time.perf_counter()
        try:
            async with self._session(c.endpoint_id).post(
                url, data=body, headers=headers, allow_redirects=False
            ) as answer:
                code = answer.status
                if 200 <= code < 300:
                    return code, None
                if 300 <= code < 400:
                    where = answer.headers.get("location", "")[:200]
                    return code, f"HTTP {code}: redirects are not followed ({where})"
                head = await answer.content.read(KEEP_RESPONSE)
                return code, f"HTTP {code}: {head.decode('utf-8', 'replace')}"
        except TargetRefused as exc:
            return None, str(exc)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            took = time.perf_counter() - started
            cause = exc.__cause__ if isinstance(exc.__cause__, TargetRefused) else exc
            return None, f"{type(cause).__name__} after {took:.1f} s: {cause}"[:1000]

    async def _turn(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        claimed = await self.run_once()
        if claimed:
            return
        # Nothing due (or no room): wait for new deliveries, room, or the poll.
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
            await asyncio.sleep(LINGER_SECONDS)

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
