"""The broker connection's coalescing transport: what one turn writes leaves in one call, in
order; a close sends what is gathered, an abort drops it; acks over it reach RabbitMQ."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest

from broker.topology import Names, connect, declare, send_message
from broker.transport import CoalescingTransport
from tests.conftest import AMQP_URL

Pair = tuple[CoalescingTransport, asyncio.StreamReader, asyncio.StreamWriter, list[int]]


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    """A coalescing transport to a local server's end; `writes` counts the inner transport's."""
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await accepted.put((r, w))

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    inner, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    writes: list[int] = []
    real_write = inner.write

    def counted(data: bytes | bytearray | memoryview) -> None:
        writes.append(len(data))
        real_write(data)

    inner.write = counted  # type: ignore[method-assign]
    reader, writer = await accepted.get()
    transport = CoalescingTransport(inner, loop)
    yield transport, reader, writer, writes
    transport.abort()
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()


async def test_one_turns_writes_leave_in_one_call_in_order(pair: Pair) -> None:
    t, reader, _, writes = pair
    t.write(b"one ")
    t.writelines([b"two ", b"three"])
    assert writes == []  # nothing yet: the turn is not over
    await asyncio.sleep(0)
    assert writes == [len(b"one two three")]
    assert await reader.readexactly(13) == b"one two three"
    t.write(b"four")
    t.close()  # sends what is gathered first
    assert await reader.read() == b"four"


async def test_an_abort_drops_what_is_gathered(pair: Pair) -> None:
    t, reader, _, writes = pair
    t.write(b"never")
    t.abort()
    await asyncio.sleep(0)
    assert writes == []
    assert await reader.read() == b""


async def test_acks_of_a_batch_reach_the_broker(amqp_prefix: str) -> None:
    connection = await connect(AMQP_URL, name="test")
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=100)
        topology = await declare(channel, Names.from_prefix(amqp_prefix))
        for i in range(50):
            await topology.exchange.publish(send_message(b"{}", i + 1), routing_key="send")
        got: list[aio_pika.abc.AbstractIncomingMessage] = []
        async with topology.queue.iterator() as it:
            async for msg in it:
                got.append(msg)
                if len(got) == 50:
                    await asyncio.gather(*(m.ack() for m in got))  # one turn of acks
                    break
        await connection.close()
        # A fresh connection sees none of them again: every ack arrived.
        connection = await connect(AMQP_URL, name="test")
        channel = await connection.channel()
        queue = await channel.get_queue(Names.from_prefix(amqp_prefix).queue)
        assert await queue.get(no_ack=False, fail=False, timeout=5) is None
    finally:
        await connection.close()
