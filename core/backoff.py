"""Retry arithmetic and SMTP outcome classification for email sends (retries are data)."""

from __future__ import annotations

import enum
import random
import re
from dataclasses import dataclass

from core import inbound


class Outcome(enum.StrEnum):
    TRANSIENT = "transient"  # try again later (4xx, timeouts, refused connections)
    PERMANENT = "permanent"  # never retry this message (5xx)
    BOUNCE = "bounce"  # permanent and the address itself is bad: suppress it
    # The whole message went out and no reply came back (connection lost, timeout): the server
    # may have accepted it. Handled like a worker lost mid-send (docs/architecture.md §2).
    AMBIGUOUS = "ambiguous"


# The SMTP command a failure's stage answered, as the bounce authority reads a stage.
_COMMAND = {"rcpt": "RCPT", "data": "DATA", "content": "DATA", "mail": "MAIL", "connect": "HELO"}


@dataclass(frozen=True, slots=True)
class SmtpFailure:
    """What went wrong in one SMTP attempt, independent of the client library."""

    code: int | None  # reply code, None for network errors and timeouts
    message: str
    after_data: bool = False  # the message content had been transmitted when it failed
    # Where it failed: connect (connection, greeting, TLS, AUTH), mail, rcpt, data, content.
    stage: str | None = None

    @property
    def enhanced(self) -> str | None:
        head = self.message.strip().split(" ", 1)[0]
        parts = head.split(".")
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            return head
        return None


# "Try later / rate limited": a provider slowing this sender down (Yahoo's TSS04, Gmail's
# 4.7.28, Microsoft's 4.7.500-699): that sender->provider pair backs off (core/providers.py).
_THROTTLE = re.compile(
    r"rate.?limit|too many (?:messages|connections|recipients|mails?)|"
    r"temporar(?:il)?y (?:deferred|rate)|\bTS[S]?0\d\b|throttl|slow down|exceed|unusual rate",
    re.IGNORECASE,
)


def throttled(failure: SmtpFailure) -> bool:
    """A temporary refusal that asks this sender to slow down at that provider."""
    code = failure.code or 0
    if not 400 <= code < 500:
        return False
    return bool(_THROTTLE.search(failure.message)) or (failure.enhanced or "").startswith("4.7.")


def hard_bounce(failure: SmtpFailure) -> tuple[str, bool]:
    """(reason, hard) of a refusal, by the one bounce authority (core/inbound.py `verdict`):
    the same answer gets the same verdict whether it comes at send time or later in a
    report, the stage it answered taken into account (an "unknown user" after DATA is a
    content filter's; a policy or spam refusal is never the address's)."""
    code = failure.code or 0
    status = failure.enhanced or f"{code // 100}.0.0"
    return inbound.verdict(
        status, f"{code} {failure.message}", answer=True, command=_COMMAND.get(failure.stage or "")
    )


def classify(failure: SmtpFailure) -> Outcome:
    """Decide whether a failed attempt is retried, failed, or a bounce."""
    code = failure.code
    if code is None and failure.after_data:
        return Outcome.AMBIGUOUS
    if code is None or 400 <= code < 500:
        return Outcome.TRANSIENT
    if 500 <= code < 600:
        return Outcome.BOUNCE if hard_bounce(failure)[1] else Outcome.PERMANENT
    # Anything else (2xx/3xx reported as an error) is a protocol surprise: retry.
    return Outcome.TRANSIENT


def retry_delay(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after the `attempt`-th failed try: exponential, capped, equal jitter.

    The result lies in [d/2, d] where d = min(cap, base * 2**(attempt-1)).
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    r = (rng or random).random()
    return ceiling / 2 + r * ceiling / 2
