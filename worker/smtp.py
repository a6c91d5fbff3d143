"""Reused SMTP connections with timeouts and strict TLS modes (never a plaintext fallback)."""

from __future__ import annotations

import asyncio
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


def _failure(exc: BaseException) -> SmtpFailure:
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
                errors, response = await client.sendmail(sender, [recipient], data)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                if client is not None:
                    await _discard(client)
                raise SendError(_failure(exc), _ms(loop.time() - started)) from exc
            except BaseException:
                if client is not None:
                    await _discard(client)
                raise
            self._idle.put_nowait((client, loop.time()))
            duration_ms = _ms(loop.time() - started)
            if errors:
                refused = next(iter(errors.values()))
                raise SendError(SmtpFailure(refused.code, refused.message), duration_ms)
            return Accepted(250, response, duration_ms)

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
