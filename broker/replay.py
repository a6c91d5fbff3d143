"""Moving dead-lettered messages back onto the send exchange after a fix."""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
import structlog

from broker.topology import ROUTING_KEY, Names, connect, declare

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class ReplayReport:
    replayed: int
    remaining: int


async def replay_dead_letters(url: str, names: Names, limit: int | None = None) -> ReplayReport:
    """Republish up to `limit` dead letters (confirmed) and ack each only after its confirm."""
    connection = await connect(url, name="email-scheduler-replay")
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        topo = await declare(channel, names)
        waiting = topo.dead_queue.declaration_result.message_count or 0
        replayed = 0
        while limit is None or replayed < limit:
            msg = await topo.dead_queue.get(no_ack=False, fail=False)
            if msg is None:
                break
            headers = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("x-")}
            await topo.exchange.publish(
                aio_pika.Message(
                    body=msg.body,
                    message_id=msg.message_id,
                    content_type=msg.content_type,
                    headers=headers,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=ROUTING_KEY,
                mandatory=True,
            )
            await msg.ack()
            replayed += 1
            log.info("dead_letter_replayed", outbox_id=msg.message_id)
        return ReplayReport(replayed=replayed, remaining=max(waiting - replayed, 0))
    finally:
        await connection.close()
