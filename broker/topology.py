"""Every RabbitMQ declaration in one place: send exchange and quorum queue, dead letters."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)

from broker.transport import CoalescingTransportFactory, RobustConnection, node_urls
from runtime.startup import broker_fatal, wait_for

ROUTING_KEY = "send"
# A message redelivered this many times (its consumers keep dying on it) is dead-lettered.
DELIVERY_LIMIT = 20

BROKER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    TimeoutError,
    aio_pika.exceptions.AMQPConnectionError,
    aio_pika.exceptions.ChannelClosed,
)


@dataclass(frozen=True, slots=True)
class Names:
    exchange: str
    queue: str
    dead_exchange: str
    dead_queue: str

    @classmethod
    def from_prefix(cls, prefix: str) -> Names:
        return cls(
            exchange=f"{prefix}.send",
            queue=f"{prefix}.send",
            dead_exchange=f"{prefix}.dead",
            dead_queue=f"{prefix}.dead",
        )


@dataclass(frozen=True, slots=True)
class Topology:
    exchange: AbstractExchange
    queue: AbstractQueue
    dead_exchange: AbstractExchange
    dead_queue: AbstractQueue


async def connect(
    url: str, *, name: str, stop: asyncio.Event | None = None
) -> AbstractRobustConnection:
    """A robust connection, waiting (and saying so) while the broker is starting or
    unreachable; runtime.startup.StartupError for a wrong login or virtual host."""

    return await wait_for(
        "broker", partial(open_connection, url, name), broker_fatal(url), BROKER_ERRORS, stop=stop
    )


async def open_connection(url: str, name: str) -> AbstractRobustConnection:
    """A robust connection to AMQP_URL's node, or to the first of its nodes that answers
    (and on to another when that one goes away)."""
    nodes = node_urls(url)
    connection = RobustConnection(
        nodes[0],
        client_properties={"connection_name": name},
        transport_factory=CoalescingTransportFactory(nodes),
    )
    await connection.connect()
    return connection


async def declare(channel: AbstractChannel, names: Names) -> Topology:
    """Declare (idempotently) the exchanges, queues and bindings; return them."""
    dead_exchange = await channel.declare_exchange(
        names.dead_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead_queue = await channel.declare_queue(
        names.dead_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead_queue.bind(dead_exchange, routing_key="#")
    exchange = await channel.declare_exchange(
        names.exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    queue = await channel.declare_queue(
        names.queue,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": names.dead_exchange,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-delivery-limit": DELIVERY_LIMIT,
        },
    )
    await queue.bind(exchange, routing_key=ROUTING_KEY)
    return Topology(exchange, queue, dead_exchange, dead_queue)


def send_message(body: bytes, outbox_id: int) -> aio_pika.Message:
    """A persistent message carrying one outbox row; message_id is the outbox id."""
    return aio_pika.Message(
        body=body,
        message_id=str(outbox_id),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
