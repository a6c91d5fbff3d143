"""An SMTP server that misbehaves on purpose, from a seed: 421/451 answers, 550 for some
recipients, connections dropped before and after DATA, slow answers. It records what it
accepted (replied 250) and what it read in full before dropping the connection."""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from tests.fault.services import free_port
from tests.smtp_server import advertise_pipelining

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>]+>)", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Copy:
    message_id: str
    mail_from: str
    rcpt: str
    at: float
    acked: bool  # False: read in full, then the connection was dropped without a reply


@dataclass
class Hostility:
    """Probabilities per command; recipients whose local part starts with `bounce` get 550."""

    rcpt_421: float = 0.02
    drop_before_data: float = 0.02
    data_451: float = 0.04
    drop_after_data: float = 0.02
    slow: float = 0.05
    slow_seconds: tuple[float, float] = (0.2, 1.5)


@dataclass
class _Handler:
    rng: random.Random
    hostility: Hostility
    copies: list[Copy] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    hostile: bool = True
    sender_reply: str | None = None  # an outage: the answer to every MAIL FROM
    recipient_reply: str | None = None  # an outage: every RCPT TO's answer ({} the address)

    def _roll(self, p: float) -> bool:
        with self.lock:
            return self.hostile and self.rng.random() < p

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        return await advertise_pipelining(session, hostname, responses)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.sender_reply is not None:
            self.counts[self.sender_reply[:3]] += 1
            return self.sender_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        session.mail_at = time.time()  # the hand-off, as close to the client's as we can see
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.recipient_reply is not None:
            self.counts[self.recipient_reply[:3]] += 1
            return self.recipient_reply.format(address)
        if address.split("@", maxsplit=1)[0].startswith("bounce"):
            self.counts["550"] += 1
            return "550 5.1.1 no such user"
        if self._roll(self.hostility.rcpt_421):
            self.counts["421"] += 1
            return "421 4.3.2 try again later"
        if self._roll(self.hostility.drop_before_data):
            self.counts["drop_before_data"] += 1
            server.transport.abort()
            return "421 closing"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        received_at = session.mail_at
        if self._roll(self.hostility.slow):
            self.counts["slow"] += 1
            with self.lock:
                delay = self.rng.uniform(*self.hostility.slow_seconds)
            await asyncio.sleep(delay)
        if self._roll(self.hostility.data_451):
            self.counts["451"] += 1
            return "451 4.3.0 temporary failure"
        content: bytes = envelope.original_content or envelope.content
        m = _MESSAGE_ID.search(content)
        copy = Copy(
            message_id=m.group(1).decode() if m else "?",
            mail_from=envelope.mail_from,
            rcpt=envelope.rcpt_tos[0],
            at=received_at,
            acked=True,
        )
        if self._roll(self.hostility.drop_after_data):
            self.counts["drop_after_data"] += 1
            with self.lock:
                self.copies.append(Copy(**{**_fields(copy), "acked": False}))
            server.transport.abort()
            return "421 closing"
        with self.lock:
            self.copies.append(copy)
        self.counts["250"] += 1
        return "250 2.0.0 OK"


def _fields(c: Copy) -> dict[str, Any]:
    return {k: getattr(c, k) for k in c.__slots__}


class HostileSmtp:
    def __init__(self, seed: int, hostility: Hostility | None = None) -> None:
        self.handler = _Handler(random.Random(seed), hostility or Hostility())
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.listening = False

    @property
    def copies(self) -> list[Copy]:
        with self.handler.lock:
            return list(self.handler.copies)

    def calm(self) -> None:
        """Stop misbehaving (the end of a run lets retries finish)."""
        self.handler.hostile = False

    def start(self) -> HostileSmtp:
        self.controller.start()
        self.listening = True
        return self

    def refuse(self) -> None:
        """An outage: nothing listens on the port (connections are refused)."""
        if self.listening:
            self.controller.stop()
            self.listening = False

    def listen(self) -> None:
        """Back after `refuse`."""
        if not self.listening:
            self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
            self.controller.start()
            self.listening = True

    def refuse_senders(self, reply: str | None) -> None:
        """An outage of another kind: every MAIL FROM answered `reply` (None: over)."""
        self.handler.sender_reply = reply

    def refuse_recipients(self, reply: str | None) -> None:
        """An outage where the relay turns every recipient away (`reply`, `{}` the address),
        as a relay that stopped relaying for us does (None: over)."""
        self.handler.recipient_reply = reply

    def stop(self) -> None:
        if self.listening:
            self.controller.stop()
            self.listening = False
