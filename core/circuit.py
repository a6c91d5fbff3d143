"""The SMTP circuit of one account (a sender's own, or the relay): when the relay or the
account fails rather than a recipient, its messages wait instead of spending their leads'
attempts, until a probe gets through.

Pure: the worker tells it what happened and asks before each send.

- An *account failure* opens the circuit at once: no connection, a timeout, TLS or AUTH
  refused, 421 (the server is closing), the sender refused at MAIL FROM.
- A run of failures for *different* recipients with no success between (a relay that
  answers 5xx to everything) opens it too; from the second one in the run the messages
  are held, not failed, until a success shows the account works. "No such user" answers
  (5.1.x) are about their address and never count.
- Open: every message waits until `retry_at` (30 s, then doubling to 10 minutes). Then one
  message goes as a probe (half open): success closes the circuit, failure opens it again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.backoff import Outcome, SmtpFailure, classify

FIRST_WAIT = timedelta(seconds=30)
LONGEST_WAIT = timedelta(minutes=10)
RUN_TO_OPEN = 3  # failures for different recipients in a row that open the circuit
_ACCOUNT_CODES = {421, 530, 534, 535, 538}


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def account_failure(failure: SmtpFailure) -> bool:
    """The relay or the account failed, not the recipient."""
    if failure.after_data:
        return False
    if failure.stage in ("connect", "mail"):
        return True
    return failure.code in _ACCOUNT_CODES


@dataclass(frozen=True, slots=True)
class Go:
    """Send; `probe`: the one message that tests an open circuit."""

    probe: bool = False


@dataclass(frozen=True, slots=True)
class Wait:
    until: datetime


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to make of a failed send: `hold` it (no attempt spent) or let the lead's own
    retry rules decide; `opened` when this failure opened the circuit."""

    hold: bool
    opened: bool = False
    closed: bool = False  # the failure still showed the account working (after DATA)


@dataclass(slots=True)
class Circuit:
    first_wait: timedelta = FIRST_WAIT
    state: State = State.CLOSED
    retry_at: datetime | None = None
    wait: timedelta = FIRST_WAIT
    reason: str = ""
    run: set[str] = field(default_factory=set)  # recipients failed since the last success
    probing: bool = False

    def __post_init__(self) -> None:
        self.wait = self.first_wait

    def before_send(self, now: datetime) -> Go | Wait:
        if self.state is State.CLOSED:
            return Go()
        assert self.retry_at is not None
        if self.state is State.OPEN and now >= self.retry_at and not self.probing:
            self.state, self.probing = State.HALF_OPEN, True
            return Go(probe=True)
        # While the probe is out, the others wait as long as a failed probe would make them.
        return Wait(self.retry_at if now < self.retry_at else now + self.wait)

    def succeeded(self) -> bool:
        """A message went through; True if that closed the circuit."""
        was_open = self.state is not State.CLOSED
        self.state, self.retry_at, self.reason = State.CLOSED, None, ""
        self.wait = self.first_wait
        self.run.clear()
        self.probing = False
        return was_open

    def _open(self, now: datetime, reason: str) -> bool:
        """Open (True: it was closed); a failed probe waits twice as long; a failure of a
        message that was under way when it opened changes nothing."""
        if self.state is State.OPEN:
            return False
        was_closed = self.state is State.CLOSED
        if not was_closed:
            self.wait = min(self.wait * 2, LONGEST_WAIT)
        self.state, self.retry_at, self.reason = State.OPEN, now + self.wait, reason
        self.probing = False
        return was_closed

    def failed(self, failure: SmtpFailure, recipient: str, now: datetime) -> Verdict:
        if failure.after_data:
            # The server may have the message (a reply lost after DATA): never held, which
            # would send it again; the lead's own rules decide (unknown). The account got
            # as far as DATA, so it works: a probe that got there closes the circuit.
            return Verdict(hold=False, closed=self.state is State.HALF_OPEN and self.succeeded())
        if account_failure(failure):
            return Verdict(hold=True, opened=self._open(now, failure.message[:300]))
        if self.state is State.HALF_OPEN:  # the probe's recipient failed: say nothing yet
            self.state, self.probing = State.OPEN, False
            self.retry_at = now + self.wait
            return Verdict(hold=True)
        if classify(failure) is Outcome.BOUNCE:
            return Verdict(hold=False)  # that address does not exist: the account is fine
        self.run.add(recipient.lower())
        if len(self.run) >= RUN_TO_OPEN:
            reason = f"{len(self.run)} recipients refused in a row: {failure.message[:200]}"
            return Verdict(hold=True, opened=self._open(now, reason))
        return Verdict(hold=len(self.run) > 1)
