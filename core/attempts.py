"""What happens after an SMTP attempt failed: retry at a time, fail the lead, or record the
delivery as unknown (the message may have arrived). Pure: the worker records what this says."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.backoff import Outcome, SmtpFailure, classify, retry_delay
from core.gate import AmbiguousPolicy


@dataclass(frozen=True, slots=True)
class Retry:
    at: datetime


@dataclass(frozen=True, slots=True)
class Fail:
    reason: str  # bounced | permanent_error | attempts_exhausted
    suppress: bool = False  # the address itself is bad


@dataclass(frozen=True, slots=True)
class Unknown:
    """The content went out and no reply came: not repeated (at most once)."""


AfterFailure = Retry | Fail | Unknown


@dataclass(frozen=True, slots=True)
class RetryRules:
    max_attempts: int
    base_seconds: float
    max_seconds: float
    ambiguous: AmbiguousPolicy = AmbiguousPolicy.SKIP


def after_failure(
    failure: SmtpFailure,
    attempts: int,
    rules: RetryRules,
    now: datetime,
    rng: random.Random | None = None,
) -> AfterFailure:
    """Decide the next step for a delivery whose `attempts`-th attempt failed as `failure`."""
    outcome = classify(failure)
    if outcome is Outcome.AMBIGUOUS:
        if rules.ambiguous is AmbiguousPolicy.SKIP:
            return Unknown()
        outcome = Outcome.TRANSIENT  # resend: same Message-ID, receivers can de-duplicate
    if outcome is Outcome.BOUNCE:
        return Fail("bounced", suppress=True)
    if outcome is Outcome.PERMANENT:
        return Fail("permanent_error")
    if attempts >= rules.max_attempts:
        return Fail("attempts_exhausted")
    delay = retry_delay(attempts, base=rules.base_seconds, cap=rules.max_seconds, rng=rng)
    return Retry(now + timedelta(seconds=delay))
