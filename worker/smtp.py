"""Reused SMTP connections with timeouts and strict TLS modes (never a plaintext fallback)."""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass

import aiosmtplib

from core.backoff import SmtpFailure
from core.settings import SmtpTls, WorkerSettings


class SendError(Exception):
    """One SMTP attempt failed; `failure` says how, independent of the client library."""

    def __init__(self, failure: SmtpFailure, duration_ms: float = 0.0) -> None:
        super().__init__(f"{failure.code or 'no reply'}: {failure.message}")
        self.failure = failure
        self.duration_ms = duration_ms


@dataclass(frozen=True, slots=True)
class Accepted:
    code: int
    message: str
    duration_ms: float  # the SMTP conversation, without any wait for a pacing slot


class _NoReplyAfterData(Exception):
    """The message content was written and the reply never came."""


# RFC 5321 4.5.2: a line that starts with a period gets one more.
_LEADING_DOT = re.compile(rb"(?m)^\.")


async def _transact(
    client: aiosmtplib.SMTP, sender: str, recipient: str, data: bytes, reply_within: float
) -> str:
    """MAIL, RCPT, DATA on an open connection; return the server's final reply text.

    Unlike `sendmail`, this tells apart a failure before the content went out (safe to
    retry) from a lost reply after it (the server may have the message).
    """
    await client.mail(sender)
    await client.rcpt(recipient)
    start = await client.execute_command(b"DATA")
    if start.code != 354:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    payload = _LEADING_DOT.sub(b"..", data)
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("connection lost before the content")
    try:
        protocol.write(payload + b".\r\n")
        reply = await protocol.read_response(timeout=reply_within)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
        raise _NoReplyAfterData(f"{type(exc).__name__}: {exc}") from exc
    if reply.code != 250:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return reply.message


def _failure(exc: BaseException) -> SmtpFailure:
    if isinstance(exc, _NoReplyAfterData):
        return SmtpFailure(None, f"no reply after the message was sent ({exc})", after_data=True)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        first = exc.recipients[0]
        return SmtpFailure(first.code, first.message)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return SmtpFailure(exc.code, exc.message)
    return SmtpFailure(None, f"{type(exc).__name__}: {exc}")


# A connection idle longer than this is checked with NOOP before use: servers drop idle
# sessions, and a message must not fail (and wait for a retry) because of that.
IDLE_CHECK_SECONDS = 10.0


class SmtpPool:
    """Up to `size` open connections handed out one at a time; a broken one is discarded."""

    def __init__(self, settings: WorkerSettings, size: int) -> None:
        self._settings = settings
        self._idle: asyncio.LifoQueue[tuple[aiosmtplib.SMTP, float]] = asyncio.LifoQueue()
        self._slots = asyncio.Semaphore(size)

    def _client(self) -> aiosmtplib.SMTP:
        s = self._settings
        tls_context = ssl.create_default_context() if s.smtp_tls is not SmtpTls.NONE else None
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            timeout=s.smtp_timeout_seconds,
            use_tls=s.smtp_tls is SmtpTls.TLS,
            # Explicit: None would mean "STARTTLS if offered", i.e. plaintext if it isn't.
            start_tls=s.smtp_tls is SmtpTls.STARTTLS,
            validate_certs=True,
            tls_context=tls_context,
            local_hostname=s.smtp_local_hostname,
        )

    async def _ready(self) -> aiosmtplib.SMTP:
        """An idle connection that still answers, or a new one."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, idle_since = self._idle.get_nowait()
            except asyncio.QueueEmpty:
                break
            if loop.time() - idle_since < IDLE_CHECK_SECONDS:
                return client
            try:
                await client.noop()
                return client
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                await _discard(client)
        client = self._client()
        await client.connect()
        return client

    async def send(
        self, sender: str, recipient: str, data: bytes, *, not_before: float | None = None
    ) -> Accepted:
        """Hand one message to the server; raise SendError on any failure.

        `not_before` (event-loop time): the connection is made ready first and the message
        handed over no earlier than that, so a pacing slot holds as the server sees it.
        """
        loop = asyncio.get_running_loop()
        async with self._slots:
            client: aiosmtplib.SMTP | None = None
            started = loop.time()
            try:
                client = await self._ready()
                if not_before is not None and (wait := not_before - loop.time()) > 0:
                    await asyncio.sleep(wait)
                started = loop.time()
                response = await _transact(
                    client, sender, recipient, data, self._settings.smtp_timeout_seconds
                )
            except (aiosmtplib.SMTPException, OSError, TimeoutError, _NoReplyAfterData) as exc:
                if client is not None:
                    await _discard(client)
                raise SendError(_failure(exc), _ms(loop.time() - started)) from exc
            except BaseException:
                if client is not None:
                    await _discard(client)
                raise
            self._idle.put_nowait((client, loop.time()))
            return Accepted(250, response, _ms(loop.time() - started))

    async def warm(self, count: int) -> int:
        """Open up to `count` connections ahead of the first message; return how many opened.

        Best effort: an unreachable server shows up (and is handled) on the first send.
        """
        opened = 0
        loop = asyncio.get_running_loop()
        for _ in range(count):
            client = self._client()
            try:
                await client.connect()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                await _discard(client)
                break
            self._idle.put_nowait((client, loop.time()))
            opened += 1
        return opened

    async def close(self) -> None:
        """QUIT every idle connection."""
        while not self._idle.empty():
            client, _ = self._idle.get_nowait()
            try:
                await asyncio.wait_for(client.quit(), timeout=5)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()


async def _discard(client: aiosmtplib.SMTP) -> None:
    if client.is_connected:
        client.close()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
