"""The deliverer's HTTP client against real servers, the well-behaved and the hostile: an
answer is written by whoever runs the endpoint, so every way it can be wrong ends in one
clear error (or a kept head), never a hang past the caller's timeout, never a connection
reused in a state it cannot be read from."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from yarl import URL

from tests.imap_server import self_signed
from webhooks.http import MAX_HEAD, Origin, ProtocolError, TargetRefused

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serve(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[int, list[int]]]:
    """A server on a free port; (its port, one entry per connection it accepted)."""
    accepted: list[int] = []

    async def counted(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await handler(r, w)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()

    server = await asyncio.start_server(counted, "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        server.close()


async def read_request(r: asyncio.StreamReader) -> bytes:
    head = await r.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )  # fmt: skip
    return head + await r.readexactly(length)


def answering(*answers: bytes, then_close: bool = False) -> Handler:
    """Reads requests and writes the next answer, the answers shared by all connections;
    a connection is closed (without a word) once the answers are used up, or after one
    answer with `then_close`."""
    left = iter(answers)

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await read_request(r)
            answer = next(left, None)
            if answer is None:
                return
            w.write(answer)
            await w.drain()
            if then_close:
                return

    return handler


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def origin(port: int, scheme: str = "http", context: ssl.SSLContext | None = None) -> Origin:
    return Origin(
        URL(f"{scheme}://127.0.0.1:{port}/in?x=1"), allow_private=True, user_agent="test",
        ssl_context=context or ssl.create_default_context(),
    )  # fmt: skip


def post(o: Origin, port: int, body: bytes = b'{"a":1}', keep: int = 300) -> Awaitable[object]:
    request = o.request(URL(f"http://127.0.0.1:{port}/in?x=1"), {"webhook-id": "msg_1"}, body)
    return asyncio.wait_for(o.post(request, keep), timeout=5)


async def test_a_request_is_what_a_server_reads() -> None:
    seen: list[bytes] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        seen.append(await read_request(r))
        w.write(OK)
        await w.drain()
        await r.read()

    async with serve(handler) as (port, _):
        o = origin(port)
        await post(o, port, b'{"a":"\xc3\xa9"}')
        o.close()
    head, body = seen[0].split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /in?x=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}".encode() in lines
    assert b"webhook-id: msg_1" in lines
    assert b"Content-Length: 10" in lines
    assert body == b'{"a":"\xc3\xa9"}'


async def test_connections_are_kept_and_a_closed_one_is_replaced() -> None:
    connections = 0

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        for n in range(1, 1000):
            await read_request(r)
            if first and n == 11:
                return  # closed as the request arrives, as an idle timeout may
            w.write(OK)
            await w.drain()

    async with serve(handler) as (port, accepted):
        o = origin(port)
        for _ in range(10):
            assert (await post(o, port)).status == 200  # type: ignore[attr-defined]
        assert len(accepted) == 1
        # The kept connection is closed by the server under the 11th request: it goes
        # again on a new one, and nothing is reported.
        assert (await post(o, port)).status == 200  # type: ignore[attr-defined]
        assert len(accepted) == 2
        assert (await post(o, port)).status == 200  # type: ignore[attr-defined]
        assert len(accepted) == 2
        o.close()


async def test_connection_close_and_http_1_0_are_not_reused() -> None:
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    old = b"HTTP/1.0 200 OK\r\n\r\nfine"
    for answer in (close, old):
        async with serve(answering(answer, answer, then_close=True)) as (port, accepted):
            o = origin(port)
            assert (await post(o, port)).status == 200  # type: ignore[attr-defined]
            assert (await post(o, port)).status == 200  # type: ignore[attr-defined]
            assert len(accepted) == 2
            assert o.idle == []


async def test_a_chunked_answer_is_read_and_its_connection_kept() -> None:
    chunked = (
        b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nnot y\r\n3\r\net!\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    async with serve(answering(chunked, OK)) as (port, accepted):
        o = origin(port)
        first = await post(o, port)
        assert (first.status, first.head) == (500, b"not yet!")  # type: ignore[attr-defined]
        assert (await post(o, port)).status == 200  # type: ignore[attr-defined]
        assert len(accepted) == 1
        o.close()


async def test_a_redirect_is_reported_not_followed() -> None:
    moved = b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n"
    async with serve(answering(moved)) as (port, accepted):
        o = origin(port)
        answer = await post(o, port)
        assert (answer.status, answer.location) == (302, "http://169.254.169.254/")  # type: ignore[attr-defined]
        assert len(accepted) == 1
        o.close()


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"SMTP 220 hello\r\n\r\n", "not an HTTP status line"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "not an HTTP status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "not a header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "two content"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "not a content-length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not a chunk size"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEAD + 10), "over 65536 bytes"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"0" * (MAX_HEAD + 10),
            "over 65536 bytes",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: "
            + b"t" * (MAX_HEAD + 10),
            "over 65536 bytes",
        ),
    ],
)
async def test_a_malformed_answer_is_one_clear_error(answer: bytes, error: str) -> None:
    async with serve(answering(answer, OK)) as (port, accepted):
        o = origin(port)
        with pytest.raises(ProtocolError, match=error):
            await post(o, port)
        assert o.idle == []
        # The next POST has a connection of its own.
        assert (await post(o, port)).status == 200  # type: ignore[attr-defined]
        assert len(accepted) == 2
        o.close()


async def test_a_huge_answer_is_cut_to_its_head_and_its_connection_dropped() -> None:
    async def endless(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 100000000\r\n\r\n")
        for _ in range(1000):
            w.write(b"x" * 10_000)
            await w.drain()

    async with serve(endless) as (port, _):
        o = origin(port)
        answer = await post(o, port, keep=300)
        assert (answer.status, answer.head) == (503, b"x" * 300)  # type: ignore[attr-defined]
        assert o.idle == []


async def test_an_answer_that_never_ends_is_cut_off_by_the_timeout() -> None:
    async def trickle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\n")
        while True:
            w.write(b"X-Slow: 1\r\n")
            await w.drain()
            await asyncio.sleep(0.05)

    async with serve(trickle) as (port, _):
        o = origin(port)
        request = o.request(URL(f"http://127.0.0.1:{port}/"), {}, b"{}")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await o.post(request, 300)
        assert o.idle == []


async def test_a_name_that_resolves_to_a_private_address_is_refused() -> None:
    o = Origin(
        URL("https://localhost:9/in"), allow_private=False, user_agent="test",
        ssl_context=ssl.create_default_context(),
    )  # fmt: skip
    request = o.request(URL("https://localhost:9/in"), {}, b"{}")
    with pytest.raises(TargetRefused, match=r"localhost resolves to .* not a public address"):
        await o.post(request, 300)


async def test_https_checks_the_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    self_signed(cert, key)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    async with serve(answering(OK, OK), server_side) as (port, _):
        untrusted = origin(port, "https")
        with pytest.raises(ssl.SSLCertVerificationError):
            await post(untrusted, port)
        trusting = ssl.create_default_context(cafile=str(cert))
        trusted = origin(port, "https", trusting)
        assert (await post(trusted, port)).status == 200  # type: ignore[attr-defined]
        trusted.close()
