"""A real SMTP server for tests (aiosmtpd), recording what it accepts, misbehaving on demand."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    data: bytes
    at: float
    login: str | None = None  # the user name it was sent as (servers that want AUTH)

    @property
    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Rules:
    """Per-recipient answers: permanent RCPT codes and a number of transient DATA failures."""

    rcpt: dict[str, str] = field(default_factory=dict)
    data_failures: dict[str, list[str]] = field(default_factory=dict)
    # Recipients whose next message is read in full, then the connection dropped, no reply.
    drop_after_data: dict[str, int] = field(default_factory=dict)
    # The answer to every MAIL FROM, when set (a relay refusing every sender).
    sender: str | None = None
    # The answer to every RCPT TO of a message from this sender (a blocklist listing it).
    by_sender: dict[str, str] = field(default_factory=dict)
    # Every hand-off tried, accepted or not: (MAIL FROM, RCPT TO, reply code).
    tried: list[tuple[str, str, int]] = field(default_factory=list)


async def advertise_pipelining(session: Any, hostname: str, responses: list[str]) -> list[str]:
    """aiosmtpd's EHLO answer with PIPELINING (RFC 2920) added: aiosmtpd reads commands
    one line at a time, so a client may send a group at once; it just does not say so."""
    session.host_name = hostname
    return [*responses[:-1], "250-PIPELINING", responses[-1]]


class Handler:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.dropped: list[Received] = []  # read in full, then the connection dropped
        self.rules = Rules()
        self.lock = threading.Lock()

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: Any
    ) -> str:
        if self.rules.sender is not None:
            return self.rules.sender
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        reply = self.rules.by_sender.get(envelope.mail_from) or self.rules.rcpt.get(address)
        self.rules.tried.append((envelope.mail_from, address, int((reply or "250")[:3])))
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                if self.rules.drop_after_data.get(rcpt, 0) > 0:
                    self.rules.drop_after_data[rcpt] -= 1
                    self.dropped.append(_received(envelope))
                    server.transport.abort()
                    return "421 closing"  # never reaches the client
            for rcpt in envelope.rcpt_tos:
                pending = self.rules.data_failures.get(rcpt)
                if pending:
                    return pending.pop(0)
            got = _received(envelope)
            got.login = getattr(session, "auth_data", None)
            self.received.append(got)
        return "250 2.0.0 OK queued"


def _received(envelope: Any) -> Received:
    return Received(
        envelope.mail_from,
        list(envelope.rcpt_tos),
        envelope.original_content or envelope.content,
        time.time(),
    )


class PipeliningHandler(Handler):
    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        return await advertise_pipelining(session, hostname, responses)


class SmtpServer:
    """Offers PIPELINING unless told not to, as postfix and most relays do."""

    def __init__(
        self, port: int = 0, *, pipelining: bool = True, logins: dict[str, str] | None = None
    ) -> None:
        """`logins` (user: password): AUTH PLAIN/LOGIN required, over plain TCP (tests)."""
        self.handler = PipeliningHandler() if pipelining else Handler()
        self.logins = logins
        self.failed_logins = 0
        extra: dict[str, Any] = {}
        if logins is not None:
            extra = {"authenticator": self._check, "auth_required": True, "auth_require_tls": False}
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=port or _free_port(), **extra
        )

    def _check(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        user = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else ""
        ok = self.logins is not None and self.logins.get(user) == auth_data.password.decode()
        if not ok:
            self.failed_logins += 1
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    @property
    def port(self) -> int:
        return int(self.controller.port)

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
