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

    def __init__(self, failure: SmtpFailure) -> None:
        super().__init__(f"{failure.code or 'no reply'}: {failure.message}")
        self.failure = failure


@dataclass(frozen=True, slots=True)
class Accepted:
    code: int
    message: str


def _failure(exc: BaseException) -> SmtpFailure:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        first = exc.recipients[0]
        return SmtpFailure(first.code, first.message)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return SmtpFailure(exc.code, exc.message)
    return SmtpFailure(None, f"{type(exc).__name__}: {exc}")


class SmtpPool:
    """Up to `size` open connections handed out one at a time; a broken one is discarded."""

    def __init__(self, settings: WorkerSettings, size: int) -> None:
        self._settings = settings
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] = asyncio.LifoQueue()
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

    async def send(self, sender: str, recipient: str, data: bytes) -> Accepted:
        """Hand one message to the server; raise SendError on any failure."""
        async with self._slots:
            try:
                client = self._idle.get_nowait()
            except asyncio.QueueEmpty:
                client = self._client()
            try:
                if not client.is_connected:
                    await client.connect()
                errors, response = await client.sendmail(sender, [recipient], data)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                await _discard(client)
                raise SendError(_failure(exc)) from exc
            except BaseException:
                await _discard(client)
                raise
            self._idle.put_nowait(client)
            if errors:
                refused = next(iter(errors.values()))
                raise SendError(SmtpFailure(refused.code, refused.message))
            return Accepted(250, response)

    async def close(self) -> None:
        """QUIT every idle connection."""
        while not self._idle.empty():
            client = self._idle.get_nowait()
            try:
                await asyncio.wait_for(client.quit(), timeout=5)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()


async def _discard(client: aiosmtplib.SMTP) -> None:
    if client.is_connected:
        client.close()
