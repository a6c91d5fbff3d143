"""The reputation guard's rules (docs/architecture.md §11): what a hand-off's answer says
about the sender, when a sender's recent hand-offs say stop, how long a pause for blocks
lasts before a probe, and a warm-up's daily cap. Pure: the worker and the inbox tell it what
happened; the database keeps the window (db/guard.py).

- Each hand-off to a recipient's server is one outcome: `delivered`, `hard_bounce` (the
  address does not exist, by the one bounce authority, at send time or later from the
  inbox), `complaint` (from the inbox), `block` (a policy or blocklist refusal of the
  sender), or `soft`. A connection that never reached the recipient's server is no
  hand-off; a provider's "try later / rate limited" deferral is not the sender's health but
  that provider's backoff (`throttled`).
- Over a sender's last `window` hand-offs (since its last resume), once there are
  `min_sample` of them, a rate above its threshold pauses the sender.
- A pause for blocks resumes by itself after a cooldown (doubling on each failed probe, up
  to a day) in probation: the first block pauses it again; the first delivery ends it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core import backoff, circuit
from core.backoff import SmtpFailure, throttled

LONGEST_COOLDOWN = timedelta(days=1)


class Kind(enum.StrEnum):
    DELIVERED = "delivered"
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    BLOCK = "block"
    SOFT = "soft"


class Rate(enum.StrEnum):
    HARD_BOUNCE = "hard_bounce_rate"
    COMPLAINT = "complaint_rate"
    BLOCK = "block_rate"


_BLOCK = re.compile(r"block ?list|black ?list|blocked|spamhaus|\b(?:dns)?rbl\b|reputation", re.I)


def kind_of(failure: SmtpFailure | None) -> Kind | None:
    """What one hand-off's answer says about its sender; None when it says nothing about it
    (never reached a recipient's server, or a provider's throttling)."""
    if failure is None:
        return Kind.DELIVERED
    if failure.code is None or failure.stage == "connect" or throttled(failure):
        return None
    if 500 <= failure.code < 600:
        if backoff.hard_bounce(failure)[1]:
            return Kind.HARD_BOUNCE
        if circuit.may_be_account(failure) or _BLOCK.search(failure.message):
            return Kind.BLOCK
        return Kind.SOFT
    return Kind.BLOCK if _BLOCK.search(failure.message) else Kind.SOFT


@dataclass(frozen=True, slots=True)
class Thresholds:
    """GUARD_* settings, or one sender's overrides of them."""

    hard_bounce_rate: float = 0.05
    complaint_rate: float = 0.003
    block_rate: float = 0.10
    min_sample: int = 20
    window: int = 200

    def for_sender(self, row: Any) -> Thresholds:
        """These thresholds with a sender row's `guard_*` overrides (NULL: as here)."""

        def pick(name: str, default: Any) -> Any:
            value = row[f"guard_{name}"]
            return default if value is None else value

        return Thresholds(
            hard_bounce_rate=pick("hard_bounce_rate", self.hard_bounce_rate),
            complaint_rate=pick("complaint_rate", self.complaint_rate),
            block_rate=pick("block_rate", self.block_rate),
            min_sample=pick("min_sample", self.min_sample),
            window=self.window,
        )


@dataclass(frozen=True, slots=True)
class Health:
    """A sender's last hand-offs (at most the window, since its last resume)."""

    handoffs: int
    hard_bounces: int = 0
    complaints: int = 0
    blocks: int = 0

    def rate(self, which: Rate) -> float:
        count = {
            Rate.HARD_BOUNCE: self.hard_bounces,
            Rate.COMPLAINT: self.complaints,
            Rate.BLOCK: self.blocks,
        }[which]
        return count / self.handoffs if self.handoffs else 0.0


@dataclass(frozen=True, slots=True)
class Crossing:
    """Why a sender pauses: which rate, its value and threshold, over how many hand-offs."""

    rate: Rate
    value: float
    threshold: float
    handoffs: int

    def reason(self) -> str:
        return (
            f"{self.rate.value} {self.value:.1%} over the last {self.handoffs} hand-offs"
            f" (threshold {self.threshold:.1%})"
        )


def judge(health: Health, limits: Thresholds, *, probation: bool = False) -> Crossing | None:
    """The first rate over its threshold (complaints, then hard bounces, then blocks); in
    probation after a pause for blocks, any block."""
    if probation and health.blocks:
        return Crossing(Rate.BLOCK, health.rate(Rate.BLOCK), 0.0, health.handoffs)
    if health.handoffs < limits.min_sample:
        return None
    for which, threshold in (
        (Rate.COMPLAINT, limits.complaint_rate),
        (Rate.HARD_BOUNCE, limits.hard_bounce_rate),
        (Rate.BLOCK, limits.block_rate),
    ):
        value = health.rate(which)
        if value > threshold:
            return Crossing(which, value, threshold, health.handoffs)
    return None


@dataclass(frozen=True, slots=True)
class Policy:
    """The GUARD_* settings: thresholds, the first cooldown of a pause for blocks, on/off."""

    limits: Thresholds = field(default_factory=Thresholds)
    first_cooldown: timedelta = timedelta(minutes=30)
    enabled: bool = True


def cooldown(previous: timedelta | None, first: timedelta) -> timedelta:
    """A pause for blocks waits `first` before its probe, twice the last wait after a failed
    one, at most a day."""
    return first if previous is None else min(previous * 2, LONGEST_COOLDOWN)


@dataclass(frozen=True, slots=True)
class Warmup:
    """A new mailbox's ramp: `start` hand-offs a day on its first day, `increment` more each
    day after, up to the sender's daily_limit (the target)."""

    start: int
    increment: int
    started_at: datetime

    def cap(self, target: int | None, at: datetime) -> int:
        """The daily cap at `at`: min(target, start + day * increment), day 0 the first."""
        day = max(0, (at - self.started_at) // timedelta(days=1))
        ramp = self.start + day * self.increment
        return ramp if target is None else min(target, ramp)


def daily_cap(row: Any, at: datetime) -> int | None:
    """A sender row's daily cap at `at`, its warm-up applied."""
    target: int | None = row["daily_limit"]
    start = row["warmup_start"]
    if start is None or row["warmup_started_at"] is None:
        return target
    return Warmup(start, row["warmup_increment"] or 0, row["warmup_started_at"]).cap(target, at)
