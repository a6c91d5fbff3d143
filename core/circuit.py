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
- A refusal that *may be the account's* rather than the recipient's (relay access denied,
  sender rejected, authentication, a blocklist, a 5.7.x policy, any 5xx at MAIL FROM or
  DATA without words about the address) fails no lead until the account has delivered to
  another recipient since: until then its message is held (30 s, doubling to 10 minutes),
  no attempt spent. A relay that starts refusing everyone burns no lead, not even the first.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.backoff import Outcome, SmtpFailure, classify

FIRST_WAIT = timedelta(seconds=30)
LONGEST_WAIT = timedelta(minutes=10)
RUN_TO_OPEN = 3  # failures for different recipients in a row that open the circuit
_ACCOUNT_CODES = {421, 530, 534, 535, 538}
# Words of a refusal about the sending account or its reputation, not the recipient.
_ABOUT_ACCOUNT = re.compile(
    r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited)|not permitted to relay|"
    r"unable to relay|sender (?:address )?(?:rejected|refused|denied|blocked|not allowed)|"
    r"authenticat|block ?list|black ?list|blocked|spamhaus|\b(?:dns)?rbl\b|reputation|"
    r"not allowed to send|sending (?:limit|quota)|rate limit|too many",
    re.IGNORECASE,
)
SUSPECTS_KEPT = 10_000  # recipients remembered as held on suspicion (the oldest forgotten)


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


def may_be_account(failure: SmtpFailure) -> bool:
    """A permanent refusal that may be about the account rather than the recipient: it
    fails the lead only once the account has delivered to someone else since."""
    if failure.code is None or not 500 <= failure.code < 600 or failure.after_data:
        return False
    if classify(failure) is Outcome.BOUNCE:
        return False  # about the address
    if failure.stage in ("mail", "data", "content"):
        return True
    enhanced = failure.enhanced or ""
    return enhanced.startswith("5.7.") or bool(_ABOUT_ACCOUNT.search(failure.message))


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
    until: datetime | None = None  # held until then (else until the circuit's retry time)


@dataclass(slots=True)
class Circuit:
    first_wait: timedelta = FIRST_WAIT
    state: State = State.CLOSED
    retry_at: datetime | None = None
    wait: timedelta = FIRST_WAIT
    reason: str = ""
    run: set[str] = field(default_factory=set)  # recipients failed since the last success
    probing: bool = False
    delivered_at: datetime | None = None  # the account's last delivery
    # Recipients held on suspicion of the account: when first, and how often.
    suspects: dict[str, tuple[datetime, int]] = field(default_factory=dict)

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

    def succeeded(self, now: datetime | None = None) -> bool:
        """A message went through; True if that closed the circuit."""
        if now is not None:
            self.delivered_at = now
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
        who = recipient.lower()
        self.run.add(who)
        if len(self.run) >= RUN_TO_OPEN:
            reason = f"{len(self.run)} recipients refused in a row: {failure.message[:200]}"
            return Verdict(hold=True, opened=self._open(now, reason))
        if may_be_account(failure):
            return self._suspect(who, now)
        return Verdict(hold=len(self.run) > 1)

    def _suspect(self, who: str, now: datetime) -> Verdict:
        """Hold `who`'s message until the account has delivered to someone else since it was
        first refused; then the refusal is the recipient's, and the lead's rules decide."""
        first, times = self.suspects.get(who, (now, 0))
        if self.delivered_at is not None and self.delivered_at > first:
            self.suspects.pop(who, None)
            return Verdict(hold=False)
        self.suspects.pop(who, None)
        self.suspects[who] = (first, times + 1)
        while len(self.suspects) > SUSPECTS_KEPT:
            self.suspects.pop(next(iter(self.suspects)))
        wait = min(self.first_wait * 2 ** min(times, 20), LONGEST_WAIT)
        return Verdict(hold=True, until=now + wait)
