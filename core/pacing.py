"""Per-sender pacing: rolling hourly and daily caps, a minimum gap and random jitter.

Pure arithmetic over the sender's recent hand-offs to SMTP; the database serialises the
callers (a row lock on the sender), so these rules hold across any number of replicas.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from core import guard


class _Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Pacing:
    hourly_limit: int | None = None
    daily_limit: int | None = None
    daily_new_limit: int | None = None
    min_gap_seconds: int = 0
    jitter_seconds: int = 0

    @classmethod
    def from_mapping(cls, row: _Row, at: datetime | None = None) -> Pacing:
        """The rules from a senders row (or any mapping with the same column names); with
        `at`, the daily cap is the one a warm-up gives at that time (core/guard.py)."""
        rules = cls(**{f.name: row[f.name] for f in fields(cls)})
        if at is None:
            return rules
        return replace(rules, daily_limit=guard.daily_cap(row, at))


def _cap_frees_at(
    sends: Sequence[datetime], limit: int | None, span: timedelta, now: datetime
) -> datetime:
    """The earliest instant >= now at which a rolling `span` cap of `limit` admits one more
    send (sends sorted ascending). Sends after that instant do not count against it: a
    forecast books future hand-offs, and a send before them is judged by its own window."""
    if limit is None:
        return now
    t = now
    while True:
        lo = bisect.bisect_right(sends, t - span)
        in_span = bisect.bisect_right(sends, t) - lo
        if in_span < limit:
            return t
        # The (in_span - limit + 1)-th oldest send in the span must leave it first.
        t = sends[lo + in_span - limit] + span


def next_slot(
    pacing: Pacing,
    now: datetime,
    *,
    sends: Sequence[datetime],
    first_touches: Sequence[datetime] = (),
    gap_until: datetime | None = None,
    first_touch: bool = False,
) -> datetime:
    """The earliest instant >= now at which this sender may hand one more message to SMTP.

    `sends` and `first_touches` are the sender's hand-offs in the last day, ascending (a
    forecast adds the ones it expects); `gap_until` is the end of the gap (plus jitter)
    drawn after the last send. Each cap is judged at the slot the others allow, until all
    of them agree.
    """
    slot = now if gap_until is None else max(now, gap_until)
    while True:
        later = _cap_frees_at(sends, pacing.hourly_limit, HOUR, slot)
        later = _cap_frees_at(sends, pacing.daily_limit, DAY, later)
        if first_touch:
            later = _cap_frees_at(first_touches, pacing.daily_new_limit, DAY, later)
        if later == slot:
            return slot
        slot = later


def provider_slot(cap: int, sends: Sequence[datetime], slot: datetime) -> datetime:
    """The earliest instant >= slot at which a cap of one sender at one recipient provider
    (hand-offs in any 24 hours; `sends` ascending) admits one more. A later slot keeps the
    sender's own caps: they only free up as time passes."""
    return _cap_frees_at(sends, cap, DAY, slot)


def gap_after(pacing: Pacing, sent_at: datetime, rng: random.Random | None = None) -> datetime:
    """The end of the quiet period after a send: min gap plus a uniform 0..jitter."""
    jitter = (rng or random).uniform(0, pacing.jitter_seconds) if pacing.jitter_seconds else 0.0
    return sent_at + timedelta(seconds=pacing.min_gap_seconds + jitter)


@dataclass(slots=True)
class Forecast:
    """A sender's hand-offs projected forward, so the scheduler can spread due leads over
    the slots pacing will give them instead of queueing what the worker would turn back.

    An estimate only: the worker's check under the sender's row lock stays the arbiter.
    """

    rules: Pacing
    sends: list[datetime]
    first_touches: list[datetime]
    gap_until: datetime | None = None

    def take(
        self,
        now: datetime,
        *,
        first_touch: bool,
        soon: datetime | None = None,
        keep_clear: bool = True,
    ) -> datetime:
        """Book the next slot at or after `now` and return it: within the caps, and (with
        `keep_clear`) not within a gap of any booked hand-off, before or after it. A slot no
        later than `soon` is taken as the caps and the last gap allow (it is sent now, and
        the worker spaces what follows from it)."""
        # The expected gap: the worker draws the jitter when it hands the message over.
        gap = timedelta(seconds=self.rules.min_gap_seconds + self.rules.jitter_seconds / 2)
        slot = now
        while True:
            free = next_slot(
                self.rules,
                slot,
                sends=self.sends,
                first_touches=self.first_touches,
                gap_until=self.gap_until,
                first_touch=first_touch,
            )
            if gap and keep_clear and (soon is None or free > soon):
                i = bisect.bisect_right(self.sends, free - gap)
                while i < len(self.sends) and self.sends[i] < free + gap:
                    free = max(free, self.sends[i] + gap)
                    i += 1
            if free == slot:
                break
            slot = free
        bisect.insort(self.sends, slot)
        if first_touch:
            bisect.insort(self.first_touches, slot)
        self.gap_until = slot + gap
        return slot

    def book(self, sends: Sequence[datetime], first_touches: Sequence[datetime]) -> None:
        """Hand-offs expected at known times (leads waiting for them): what is taken next
        counts them against the caps and keeps the gap from each."""
        for at in sends:
            bisect.insort(self.sends, at)
        for at in first_touches:
            bisect.insort(self.first_touches, at)


@dataclass(slots=True)
class RateForecast:
    """The deployment-wide rate (`GLOBAL_RATE_PER_SECOND`) projected forward the same way."""

    per_second: float
    next_at: datetime

    def take(self, now: datetime) -> datetime:
        slot = max(now, self.next_at)
        self.next_at = slot + timedelta(seconds=1 / self.per_second)
        return slot


def hourly_capacity(rules: Pacing) -> int | None:
    """The most hand-offs a sender's rules allow in one hour (None: no limit)."""
    caps = [c for c in (rules.hourly_limit, rules.daily_limit) if c is not None]
    if rules.min_gap_seconds > 0:
        caps.append(max(1, 3600 // rules.min_gap_seconds))
    return min(caps) if caps else None


def spread_due(
    due: Sequence[int], rules: Pacing | None, *, sent_today: int = 0, hours_left_today: int = 24
) -> list[int]:
    """Leads due per hour (hour 0 = now) as one sender can hand them off: at most its hourly
    capacity an hour and its daily cap a day (the first day has `sent_today` used and
    `hours_left_today` hours), the rest carried to the next hour. What is still waiting
    after the last hour is dropped (it is past the forecast)."""
    if rules is None:
        return list(due)
    per_hour = hourly_capacity(rules)
    out: list[int] = []
    carry = 0
    day_used, day_end = sent_today, hours_left_today
    for hour, n in enumerate(due):
        if hour == day_end:
            day_used, day_end = 0, day_end + 24
        waiting = carry + n
        room = waiting if per_hour is None else min(waiting, per_hour)
        if rules.daily_limit is not None:
            room = max(0, min(room, rules.daily_limit - day_used))
        out.append(room)
        day_used += room
        carry = waiting - room
    return out
