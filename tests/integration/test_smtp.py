"""The worker's SMTP client against real servers: pipelined and one command at a time, replies
split across reads or run together, and what each failure is reported as."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from core.backoff import Outcome, classify
from runtime.settings import WorkerSettings
from tests.smtp_server import SmtpServer
from worker.smtp import SendError, SmtpPool

MESSAGE = b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n"


def _settings(port: int, timeout: float = 5.0) -> WorkerSettings:
    return WorkerSettings(
        database_url="postgresql://x@127.0.0.1/x",
        amqp_url="amqp://guest:guest@127.0.0.1/",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_timeout_seconds=timeout,
    )


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_message_arrives_whole_with_and_without_pipelining(pipelining: bool) -> None:
    server = SmtpServer(pipelining=pipelining).start()
    pool = SmtpPool(_settings(server.port), size=2)
    try:
        for i in range(3):  # the same connection, reused
            accepted = await pool.send("from@example.test", f"to{i}@example.test", MESSAGE)
            assert accepted.code == 250
        assert await pool.warm(1) == 1
        conn, _ = pool._idle.get_nowait()
        assert conn.pipelining is pipelining
        pool._idle.put_nowait((conn, 0.0))  # long idle: checked with NOOP before use
        await pool.send("from@example.test", "to3@example.test", MESSAGE)
    finally:
        await pool.close()
        server.stop()
    got = server.received
    assert [r.rcpt_to for r in got] == [[f"to{i}@example.test"] for i in range(4)]
    assert all(r.mail_from == "from@example.test" for r in got)
    assert got[0].data.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n")


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_refused_recipient_is_reported_with_its_code(pipelining: bool) -> None:
    server = SmtpServer(pipelining=pipelining).start()
    server.handler.rules.rcpt["nobody@example.test"] = "550 5.1.1 no such user"
    pool = SmtpPool(_settings(server.port), size=1)
    try:
        with pytest.raises(SendError) as err:
            await pool.send("from@example.test", "nobody@example.test", MESSAGE)
        assert err.value.failure.code == 550
        assert classify(err.value.failure) is Outcome.BOUNCE
        # The next message goes through (on a fresh connection).
        await pool.send("from@example.test", "someone@example.test", MESSAGE)
    finally:
        await pool.close()
        server.stop()
    assert [r.rcpt_to for r in server.received] == [["someone@example.test"]]


# A scripted server: greeting and EHLO as given, then for each transaction the replies to
# MAIL/RCPT/DATA and to the content written in chunks (to split replies across reads).


@dataclass
class Script:
    ehlo: bytes = b"250-scripted\r\n250-PIPELINING\r\n250 HELP\r\n"
    group: list[bytes] = field(default_factory=lambda: [b"250 ok\r\n250 ok\r\n354 go\r\n"])
    after_data: list[bytes] = field(default_factory=lambda: [b"250 queued\r\n"])
    seen: list[bytes] = field(default_factory=list)


async def _serve(script: Script, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    async def say(chunks: list[bytes]) -> None:
        for chunk in chunks:
            w.write(chunk)
            await w.drain()
            await asyncio.sleep(0.01)  # each chunk its own segment

    try:
        await _converse(script, reader, w, say)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client hung up, as it does after a failure
    finally:
        w.close()


async def _converse(
    script: Script,
    reader: asyncio.StreamReader,
    w: asyncio.StreamWriter,
    say: Callable[[list[bytes]], Awaitable[None]],
) -> None:
    w.write(b"220 scripted ready\r\n")
    line = await reader.readline()  # EHLO
    w.write(script.ehlo)
    while line := await reader.readline():
        script.seen.append(line)
        if line.startswith(b"QUIT"):
            w.write(b"221 bye\r\n")
            break
        if line.startswith(b"DATA"):
            await say(script.group)
            await reader.readuntil(b"\r\n.\r\n")
            await say(script.after_data)


Scripted = Callable[[Script], Awaitable[int]]


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> int:
        server = await asyncio.start_server(lambda r, w: _serve(script, r, w), "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for s in servers:
        s.close()
        await s.wait_closed()


async def _send(port: int, timeout: float = 5.0) -> str:
    pool = SmtpPool(_settings(port, timeout), size=1)
    try:
        return (await pool.send("a@example.test", "b@example.test", MESSAGE)).message
    finally:
        await pool.close()


async def test_replies_split_across_reads_and_multiline_are_read_in_order(
    scripted: Scripted,
) -> None:
    script = Script(
        group=[b"25", b"0 ok\r\n250-rcpt\r\n", b"250 ", b"fine\r\n3", b"54 go\r\n"],
        after_data=[b"250-queued as\r\n", b"250 ABC123\r\n"],
    )
    port = await scripted(script)
    assert await _send(port) == "queued as\nABC123"
    # MAIL, RCPT and DATA went in one write, so the server read them back to back.
    assert [x[:4] for x in script.seen[:3]] == [b"MAIL", b"RCPT", b"DATA"]


async def test_a_malformed_reply_fails_the_attempt_before_the_content_left(
    scripted: Scripted,
) -> None:
    port = await scripted(Script(group=[b"hello there\r\n"]))
    with pytest.raises(SendError) as err:
        await _send(port)
    assert "malformed reply line" in err.value.failure.message
    assert not err.value.failure.after_data
    assert classify(err.value.failure) is Outcome.TRANSIENT


async def test_no_reply_after_the_content_is_ambiguous(scripted: Scripted) -> None:
    port = await scripted(Script(after_data=[]))  # reads the content, says nothing
    with pytest.raises(SendError) as err:
        await _send(port, timeout=0.5)
    assert err.value.failure.after_data
    assert classify(err.value.failure) is Outcome.AMBIGUOUS


async def test_a_sender_refusal_in_a_pipelined_group_is_the_reported_failure(
    scripted: Scripted,
) -> None:
    port = await scripted(
        Script(group=[b"553 5.7.1 sender not allowed\r\n503 no mail\r\n503 no rcpt\r\n"])
    )
    with pytest.raises(SendError) as err:
        await _send(port)
    assert err.value.failure.code == 553
    assert classify(err.value.failure) is Outcome.PERMANENT


async def test_a_reply_nobody_asked_for_retires_the_connection(scripted: Scripted) -> None:
    # Each message is answered twice: the second reply would be taken for the next MAIL's.
    script = Script(after_data=[b"250 queued\r\n421 idle too long\r\n"])
    port = await scripted(script)
    pool = SmtpPool(_settings(port), size=1)
    try:
        for _ in range(3):
            assert (await pool.send("a@example.test", "b@example.test", MESSAGE)).code == 250
    finally:
        await pool.close()
    assert sum(line.startswith(b"MAIL") for line in script.seen) == 3
