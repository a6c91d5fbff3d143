"""The dead-letter queue: look at what is in it, move some or all back onto the send
exchange (after a fix), or drop them. Each goes through basic.get, so nothing is lost if
the caller stops halfway: what was not acked returns to the queue."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from broker.topology import ROUTING_KEY, Names, Topology, connect, declare


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message as the broker holds it."""

    outbox_id: str | None  # the message id
    reason: str  # the broker's: rejected (by a worker) or delivery_limit (kept crashing it)
    dead_at: datetime | None
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)


def _letter(msg: AbstractIncomingMessage) -> DeadLetter:
    headers = dict(msg.headers or {})
    deaths = headers.get("x-death") or []
    first = deaths[0] if isinstance(deaths, list) and deaths else {}
    reason = str(first.get("reason", "")) if isinstance(first, dict) else ""
    at = first.get("time") if isinstance(first, dict) else None
    if isinstance(at, datetime) and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return DeadLetter(
        outbox_id=msg.message_id,
        reason=reason or "dead-lettered",
        dead_at=at if isinstance(at, datetime) else None,
        body=msg.body,
        headers={k: v for k, v in headers.items() if not k.startswith("x-")},
    )


async def _each(
    url: str,
    names: Names,
    act: Callable[[Topology, AbstractIncomingMessage, DeadLetter], Any],
    limit: int | None,
) -> int:
    """Get dead letters one by one (up to `limit`) and hand each to `act`; return how many
    were seen. Messages `act` does not ack go back to the queue when the channel closes."""
    connection = await connect(url, name="email-scheduler-dead-letters")
    seen = 0
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        topology = await declare(channel, names)
        while limit is None or seen < limit:
            msg = await topology.dead_queue.get(no_ack=False, fail=False)
            if msg is None:
                break
            seen += 1
            await act(topology, msg, _letter(msg))
        await channel.close()
    finally:
        await connection.close()
    return seen


async def peek(url: str, names: Names, limit: int) -> list[DeadLetter]:
    """The first `limit` dead letters, left in the queue."""
    found: list[DeadLetter] = []

    async def keep(_t: Topology, _m: AbstractIncomingMessage, letter: DeadLetter) -> None:
        found.append(letter)

    await _each(url, names, keep, limit)
    return found


async def replay(
    url: str, names: Names, ids: Iterable[str] | None = None, limit: int | None = None
) -> list[str]:
    """Move dead letters (those with these message ids, or all, up to `limit`) back onto the
    send exchange; each is acked only after the broker confirmed its copy. The ids moved."""
    wanted = None if ids is None else set(ids)
    moved: list[str] = []

    async def move(topology: Topology, msg: AbstractIncomingMessage, letter: DeadLetter) -> None:
        if wanted is not None and letter.outbox_id not in wanted:
            return
        await topology.exchange.publish(
            aio_pika.Message(
                body=msg.body,
                message_id=msg.message_id,
                content_type=msg.content_type,
                headers=letter.headers,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=ROUTING_KEY,
            mandatory=True,
        )
        await msg.ack()
        moved.append(str(letter.outbox_id))

    await _each(url, names, move, None if wanted is not None else limit)
    return moved


async def purge(url: str, names: Names, ids: Iterable[str] | None = None) -> list[str]:
    """Drop dead letters (those with these message ids, or all); the ids dropped."""
    wanted = None if ids is None else set(ids)
    dropped: list[str] = []

    async def drop(_t: Topology, msg: AbstractIncomingMessage, letter: DeadLetter) -> None:
        if wanted is None or letter.outbox_id in wanted:
            await msg.ack()
            dropped.append(str(letter.outbox_id))

    await _each(url, names, drop, None)
    return dropped
