"""Reused SMTP connections with timeouts and strict TLS modes (never a plaintext fallback)."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
from dataclasses import dataclass
from typing import cast

import aiosmtplib

from core.accounts import Account, Tls
from core.backoff import SmtpFailure
from core.message import check_address
from runtime.settings import WorkerSettings


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
# RFC 5321 4.5.3.1.5: a reply line is at most 512 octets; a reply, a few lines of those.
_MAX_REPLY_BYTES = 64 * 1024


class MalformedReply(aiosmtplib.SMTPException):
    """The server sent something that is not an SMTP reply; the connection is dropped."""


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    message: str


class ReplyReader(asyncio.Protocol):
    """The replies on one connection, parsed as they arrive and handed out in order.

    aiosmtplib reads one reply per command it wrote and drops anything that comes while
    none is awaited, so it cannot wait for the three replies to a pipelined MAIL, RCPT and
    DATA. Once a connection is open (greeting, EHLO, STARTTLS, AUTH done by aiosmtplib),
    its transport is handed to this protocol, which keeps every reply until it is read.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._buffer = bytearray()
        self._replies: deque[Reply] = deque()
        self._lines: list[str] = []  # the lines so far of a multi-line reply
        self._waiter: asyncio.Future[None] | None = None
        self._error: aiosmtplib.SMTPException | None = None
        transport.set_protocol(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            self._parse()
        except aiosmtplib.SMTPException as exc:
            self._fail(exc)
            self.transport.close()
            return
        if self._replies:
            self._wake()

    def _parse(self) -> None:
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            code = line[:3]
            if not code.isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
                raise MalformedReply(f"malformed reply line: {line[:100]!r}")
            self._lines.append(line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape"))
            if line[3:4] != b"-":
                self._replies.append(Reply(int(code), "\n".join(self._lines)))
                self._lines = []
        if len(self._buffer) > _MAX_REPLY_BYTES:
            raise MalformedReply("reply too long")

    def _fail(self, exc: aiosmtplib.SMTPException) -> None:
        if self._error is None:
            self._error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._fail(aiosmtplib.SMTPServerDisconnected(f"connection lost{reason}"))

    @property
    def is_open(self) -> bool:
        """Connected and in step: every reply so far has been read. A reply nobody asked
        for (some servers announce an idle timeout) would be taken for the next command's."""
        return self._error is None and not self._replies and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._replies:
            raise MalformedReply(f"a reply nobody asked for: {self._replies[0]}")
        if self.transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("connection closed")
        self.transport.write(data)

    async def read(self, count: int, within: float) -> list[Reply]:
        """The next `count` replies; raise on a lost connection or after `within` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(self._replies) < count:
            if self._error is not None:
                raise self._error
            left = deadline - loop.time()
            if left <= 0:
                raise aiosmtplib.SMTPReadTimeoutError("timed out waiting for the server's reply")
            self._waiter = waiter = loop.create_future()
            timer = loop.call_later(left, self._wake)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return [self._replies.popleft() for _ in range(count)]

    def close(self) -> None:
        self.transport.close()


class Connection:
    """One open SMTP session: transactions, pipelined when the server offers PIPELINING."""

    def __init__(self, client: aiosmtplib.SMTP, reply_within: float) -> None:
        # uvloop's transports are asyncio transports in all but their class.
        transport = cast(asyncio.Transport | None, client.transport)
        if transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("connection lost while opening")
        self.pipelining = client.supports_extension("pipelining")
        self.reply_within = reply_within
        self.replies = ReplyReader(transport)

    @property
    def is_open(self) -> bool:
        return self.replies.is_open

    async def _command(self, line: bytes) -> Reply:
        self.replies.write(line)
        return (await self.replies.read(1, self.reply_within))[0]

    async def transact(self, sender: str, recipient: str, data: bytes) -> str:
        """MAIL, RCPT, DATA; return the server's final reply text.

        Unlike `sendmail`, this tells apart a failure before the content went out (safe to
        retry) from a lost reply after it (the server may have the message). With PIPELINING
        (RFC 2920) the three commands go in one write and their replies are read together:
        DATA is the last command of the group, and the content follows only its 354.
        """
        mail = b"MAIL FROM:<" + check_address(sender).encode("ascii") + b">\r\n"
        rcpt = b"RCPT TO:<" + check_address(recipient).encode("ascii") + b">\r\n"
        if self.pipelining:
            self.replies.write(mail + rcpt + b"DATA\r\n")
            replies = await self.replies.read(3, self.reply_within)
        else:
            replies = [await self._command(mail)]
            if replies[0].code == 250:
                replies.append(await self._command(rcpt))
                if replies[1].code in (250, 251):
                    replies.append(await self._command(b"DATA\r\n"))
        # The first reply that says no is the failure (after it, a pipelining server answers
        # the rest with 503 / 554, which say nothing more).
        if replies[0].code != 250:
            raise aiosmtplib.SMTPSenderRefused(replies[0].code, replies[0].message, sender)
        if replies[1].code not in (250, 251):
            raise aiosmtplib.SMTPRecipientRefused(replies[1].code, replies[1].message, recipient)
        if replies[2].code != 354:
            raise aiosmtplib.SMTPDataError(replies[2].code, replies[2].message)
        payload = _LEADING_DOT.sub(b"..", data)
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
        try:
            self.replies.write(payload + b".\r\n")
            (reply,) = await self.replies.read(1, self.reply_within)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _NoReplyAfterData(f"{type(exc).__name__}: {exc}") from exc
        if reply.code != 250:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        return reply.message

    async def noop(self) -> None:
        reply = await self._command(b"NOOP\r\n")
        if reply.code != 250:
            raise aiosmtplib.SMTPResponseException(reply.code, reply.message)

    async def quit(self) -> None:
        try:
            await self._command(b"QUIT\r\n")
        finally:
            self.close()

    def close(self) -> None:
        self.replies.close()


def _failure(exc: BaseException, stage: str) -> SmtpFailure:
    if isinstance(exc, _NoReplyAfterData):
        return SmtpFailure(
            None, f"no reply after the message was sent ({exc})", after_data=True, stage="content"
        )
    if stage != "connect":
        if isinstance(exc, aiosmtplib.SMTPSenderRefused):
            stage = "mail"
        elif isinstance(exc, aiosmtplib.SMTPRecipientRefused):
            stage = "rcpt"
        elif isinstance(exc, aiosmtplib.SMTPDataError):
            stage = "data"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return SmtpFailure(exc.code, exc.message, stage=stage)
    return SmtpFailure(None, f"{type(exc).__name__}: {exc}", stage=stage)


# The circuit name of the relay of SMTP_* (a sender's own account goes by its URL).
RELAY = "relay"

# A message waiting for a pacing slot takes a connection this long before the slot.
READY_AHEAD_SECONDS = 0.05

# A connection idle longer than this is checked with NOOP before use: servers drop idle
# sessions, and a message must not fail (and wait for a retry) because of that.
IDLE_CHECK_SECONDS = 10.0


class SmtpPool:
    """Up to `size` open connections handed out one at a time; a broken one is discarded."""

    def __init__(
        self,
        settings: WorkerSettings,
        size: int,
        *,
        local_hostname: str | None = None,
        account: Account | None = None,
    ) -> None:
        self._settings = settings
        self._local_hostname = local_hostname or settings.smtp_local_hostname
        # Whom to log in as where: a sender's own account, else the relay of SMTP_*.
        self.account = account or relay_account(settings)
        # The name of its circuit (core/circuit.py): the account's URL, or "relay".
        self.key = account.url if account is not None else RELAY
        self._idle: asyncio.LifoQueue[tuple[Connection, float]] = asyncio.LifoQueue()
        self._slots = asyncio.Semaphore(size)

    async def _open(self) -> Connection:
        """A new session: connected, EHLO (HELO if refused), STARTTLS and AUTH as set."""
        s, a = self._settings, self.account
        tls_context = ssl.create_default_context() if a.tls is not Tls.NONE else None
        client = aiosmtplib.SMTP(
            hostname=a.host,
            port=a.port,
            username=a.username,
            password=a.password,
            timeout=s.smtp_timeout_seconds,
            use_tls=a.tls is Tls.TLS,
            # Explicit: None would mean "STARTTLS if offered", i.e. plaintext if it isn't.
            start_tls=a.tls is Tls.STARTTLS,
            validate_certs=True,
            tls_context=tls_context,
            local_hostname=self._local_hostname,
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:  # connect() greets only for STARTTLS / AUTH
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            return Connection(client, s.smtp_timeout_seconds)
        except BaseException:
            client.close()
            raise

    async def _ready(self) -> Connection:
        """An idle connection that still answers, or a new one."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, idle_since = self._idle.get_nowait()
            except asyncio.QueueEmpty:
                break
            if not conn.is_open:
                continue
            if loop.time() - idle_since < IDLE_CHECK_SECONDS:
                return conn
            try:
                await conn.noop()
                return conn
            except (aiosmtplib.SMTPException, OSError):
                conn.close()
        return await self._open()

    async def send(
        self,
        sender: str,
        recipient: str,
        data: bytes,
        *,
        not_before: float | None = None,
    ) -> Accepted:
        """Hand one message to the server; raise SendError on any failure.

        `not_before` (event-loop time): the message is handed over no earlier than that. A
        message waiting for its pacing slot holds no connection until shortly before the
        slot; then the connection is made ready first, so the slot holds as the server sees
        it.
        """
        loop = asyncio.get_running_loop()
        if not_before is not None and (early := not_before - READY_AHEAD_SECONDS - loop.time()) > 0:
            await asyncio.sleep(early)
        async with self._slots:
            conn: Connection | None = None
            started = loop.time()
            stage = "connect"
            try:
                conn = await self._ready()
                stage = "transaction"
                if not_before is not None and (wait := not_before - loop.time()) > 0:
                    await asyncio.sleep(wait)
                started = loop.time()
                response = await conn.transact(sender, recipient, data)
            except (aiosmtplib.SMTPException, OSError, TimeoutError, _NoReplyAfterData) as exc:
                if conn is not None:
                    conn.close()
                raise SendError(_failure(exc, stage), _ms(loop.time() - started)) from exc
            except BaseException:
                if conn is not None:
                    conn.close()
                raise
            self._idle.put_nowait((conn, loop.time()))
            return Accepted(250, response, _ms(loop.time() - started))

    async def pool_for(self, sender_id: int | None) -> SmtpPool:
        """This pool serves every sender (Relays.pool_for picks one per account)."""
        return self

    async def warm(self, count: int) -> int:
        """Open up to `count` connections ahead of the first message; return how many opened.

        Best effort: an unreachable server shows up (and is handled) on the first send.
        """
        opened = 0
        loop = asyncio.get_running_loop()
        for _ in range(count):
            try:
                conn = await self._open()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                break
            self._idle.put_nowait((conn, loop.time()))
            opened += 1
        return opened

    async def close(self) -> None:
        """QUIT every idle connection."""
        while not self._idle.empty():
            conn, _ = self._idle.get_nowait()
            try:
                await asyncio.wait_for(conn.quit(), timeout=5)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                conn.close()


def relay_account(settings: WorkerSettings) -> Account:
    """The relay of SMTP_*, which senders without an account of their own send through."""
    tls = Tls(settings.smtp_tls.value)
    scheme = {Tls.NONE: "smtp", Tls.STARTTLS: "smtp+starttls", Tls.TLS: "smtps"}[tls]
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return Account(
        scheme, settings.smtp_host, settings.smtp_port, settings.smtp_username, tls, password
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
