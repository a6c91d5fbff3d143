"""The broker connection's socket, with the frames of one event-loop turn sent in one write.

aiormq writes every frame set (an ack, a publish) to the socket as it comes, one system
call each. The worker acks a whole recorded batch in one turn of the event loop, so most of
those calls would carry a few dozen bytes that could have gone together. This transport
gathers what is written during one turn and sends it at the end of the turn: the same bytes
in the same order, in fewer calls. A close or EOF sends what is gathered first; an abort
drops it, as the underlying abort does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
from aio_pika.abc import ConnectionParameter
from aiormq.connection import TransportFactory
from aiormq.exceptions import AMQPConnectionError
from yarl import URL

# asyncio's default StreamReader buffer limit (open_connection's).
_READ_LIMIT = 2**16


class CoalescingTransport(asyncio.Transport):
    """A write transport that sends what one event-loop turn wrote in one call."""

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._inner = inner
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Send everything gathered so far (a no-op once closing: the socket is gone)."""
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._inner.is_closing():
            self._inner.write(data)

    def write_eof(self) -> None:
        self.flush()
        self._inner.write_eof()

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def close(self) -> None:
        self.flush()
        self._inner.close()

    def abort(self) -> None:
        self._pending.clear()
        self._inner.abort()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size() + sum(map(len, self._pending))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def is_reading(self) -> bool:
        return self._inner.is_reading()


def node_urls(url: str) -> list[URL]:
    """AMQP_URL: one node's URL, or the nodes of one cluster separated by commas (the same
    user and virtual host on each; the first one's are used to log in)."""
    return [URL(u.strip()) for u in url.split(",") if u.strip()]


class CoalescingTransportFactory(TransportFactory):
    """aiormq's TCP (or TLS, for amqps://) connection, writing through CoalescingTransport.

    Given a cluster's nodes, each connection (the first and every reconnection) goes to the
    node that answered last, or, if it does not answer, to the next that does: a robust
    connection whose node stops comes back on another one."""

    def __init__(self, nodes: list[URL] | None = None) -> None:
        self.nodes = nodes or []
        self.current = 0

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if not self.nodes:
            return await self._open(url, kwargs)
        error: AMQPConnectionError | None = None
        for i in range(len(self.nodes)):
            at = (self.current + i) % len(self.nodes)
            try:
                opened = await self._open(self.nodes[at], dict(kwargs))
            except AMQPConnectionError as exc:
                error = exc
                continue
            self.current = at
            return opened
        assert error is not None
        raise error

    async def _open(
        self, url: URL, kwargs: dict[str, Any]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        provider = kwargs.pop("ssl_context_provider", None)
        ssl = await provider.get_context() if url.scheme == "amqps" and provider else None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_READ_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.create_connection(
                lambda: protocol,
                host=url.host or "localhost",
                port=url.port or (5671 if ssl else 5672),
                ssl=ssl,
                **kwargs,
            )
        except OSError as e:
            raise AMQPConnectionError(*e.args) from e
        writer = asyncio.StreamWriter(CoalescingTransport(transport, loop), protocol, reader, loop)
        return reader, writer


class RobustConnection(aio_pika.RobustConnection):
    """aio-pika's robust connection, taking aiormq's `transport_factory` through."""

    PARAMETERS = (
        *aio_pika.RobustConnection.PARAMETERS,
        ConnectionParameter(name="transport_factory", parser=lambda v: v, is_kwarg=True),
    )
