"""The pump loop: claim unpublished rows, publish with confirms, mark only the confirmed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial

import asyncpg
import structlog
from aio_pika.abc import AbstractExchange

from broker.topology import BROKER_ERRORS, ROUTING_KEY, send_message
from core.clock import utcnow
from db import outbox, partitions
from db.pool import TRANSIENT_DB_ERRORS, Listener
from runtime import metrics
from runtime.daemon import every, repeat, wait_first
from runtime.health import Heartbeat
from runtime.settings import PumpSettings

log = structlog.get_logger()
OUTBOX_CHANNEL = "email_scheduler_outbox"


class PublishFailed(Exception):
    """Some rows of a batch were not confirmed by the broker; they stay unpublished."""


RETRYABLE: tuple[type[BaseException], ...] = (PublishFailed, *BROKER_ERRORS)


class Pump:
    """Moves outbox rows to the broker; `run_once` does one batch."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        exchange: AbstractExchange | Sequence[AbstractExchange],
        settings: PumpSettings,
        clock: Callable[[], datetime] = utcnow,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        """`exchange`: the send exchange, or one handle on it per channel to publish over."""
        self.pool = pool
        self.exchanges = (exchange,) if isinstance(exchange, AbstractExchange) else tuple(exchange)
        self.settings = settings
        self.clock = clock
        self.published_total = 0
        self.heartbeat = heartbeat

    async def run_once(self) -> int:
        """Publish one batch; return how many rows the broker confirmed.

        The rows stay locked while they are published, so two pumps never publish the same
        row at once. A crash after the confirm and before the commit publishes a row twice;
        the worker recognises the copy.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await outbox.claim_unpublished(conn, self.settings.pump_batch_size, self.clock())
            if not rows:
                return 0
            started = time.perf_counter()
            n = len(self.exchanges)
            results = await asyncio.gather(
                *(
                    self.exchanges[i % n].publish(
                        send_message(r.body, r.id), routing_key=ROUTING_KEY, mandatory=True
                    )
                    for i, r in enumerate(rows)
                ),
                return_exceptions=True,
            )
            confirmed = [
                r.id
                for r, res in zip(rows, results, strict=True)
                if not isinstance(res, BaseException)
            ]
            if confirmed:
                await outbox.mark_published(conn, confirmed, self.clock())
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        self.published_total += len(confirmed)
        metrics.PUBLISHED.inc(len(confirmed))
        metrics.PUBLISH_BATCH.observe(len(rows))
        if confirmed:
            log.info(
                "outbox_batch_published",
                count=len(confirmed),
                first_outbox_id=confirmed[0],
                last_outbox_id=confirmed[-1],
                duration_ms=duration_ms,
            )
        if len(confirmed) < len(rows):
            errors = [res for res in results if isinstance(res, BaseException)]
            raise PublishFailed(f"{len(errors)} of {len(rows)} not confirmed: {errors[0]!r}")
        return len(confirmed)

    async def prune_once(self) -> int:
        """Delete published rows older than the retention, in batches; return how many."""
        before = self.clock() - timedelta(hours=self.settings.outbox_retention_hours)
        total = 0
        while True:
            async with self.pool.acquire() as conn:
                n = await outbox.prune_published(conn, before, self.settings.outbox_prune_batch)
            total += n
            if n < self.settings.outbox_prune_batch:
                break
        if total:
            log.info("outbox_pruned", count=total, before=before)
        return total

    async def _turn(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """One batch, then wait for rows unless the batch was full."""
        if await self.run_once() >= self.settings.pump_batch_size:
            return
        if await wait_first(stop, wake, self.settings.pump_poll_seconds):
            # Woken by new rows: let the rows around them land too (one batch).
            await wait_first(stop, None, self.settings.pump_linger_seconds)

    async def maintain_events(self) -> list[partitions.Change]:
        """The coming months' event partitions made, the ones past the retention dropped."""
        async with self.pool.acquire() as conn:
            return await partitions.maintain(conn, self.clock(), self.settings.event_retention_days)

    async def _prune(self) -> None:
        try:
            await self.prune_once()
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("prune_unavailable", error=str(exc))
        await self._maintain()

    async def _maintain(self) -> None:
        try:
            await self.maintain_events()
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("event_partitions_unavailable", error=str(exc))
        except asyncpg.LockNotAvailableError as exc:  # a long reader held the table: next time
            log.warning("event_partitions_postponed", error=str(exc))
        except asyncpg.PostgresError as exc:  # e.g. a table of that name made by hand
            log.error("event_partitions_failed", error=str(exc))  # noqa: TRY400 - no trace

    async def _summary(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                unpublished, oldest = await outbox.backlog(conn, self.clock())
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("summary_unavailable", error=str(exc))
            return
        metrics.PUMP_BACKLOG.set(unpublished)
        metrics.PUMP_OLDEST.set(oldest)
        log.info(
            "pump_summary",
            published_total=self.published_total,
            unpublished=unpublished,
            oldest_unpublished_s=round(oldest, 3),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set."""
        listener = Listener(self.settings.database_url, [OUTBOX_CHANNEL])
        log.info("pump_started", batch_size=self.settings.pump_batch_size)
        prune_every = max(60.0, min(3600.0, self.settings.outbox_retention_hours * 3600 / 4))
        async with asyncio.TaskGroup() as tg:
            tg.create_task(listener.run(stop))
            tg.create_task(every(self.settings.summary_interval_seconds, stop, self._summary))
            tg.create_task(self._maintain())  # at start too: the pump may have been down
            tg.create_task(every(prune_every, stop, self._prune))
            tg.create_task(
                repeat(
                    stop,
                    partial(self._turn, stop, listener.event),
                    (
                        (RETRYABLE, "broker_unavailable"),
                        (TRANSIENT_DB_ERRORS, "database_unavailable"),
                    ),
                    self.heartbeat,
                )
            )
