"""Sending windows in a lead's local time, exact across DST changes.

A window is a set of instants: those whose local wall-clock time falls on an allowed ISO
weekday and inside [send_from, send_until). When send_until <= send_from the window runs
overnight and belongs to the day it opens. A bound that does not exist on a given day
(the clock jumps over it) maps to the moment of the jump; a bound that occurs twice maps
to its first occurrence. So nothing is ever sent outside the wall-clock window, and a day
is skipped only if its window lies wholly inside a DST gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ALL_DAYS = frozenset(range(1, 8))
_MIDNIGHT = time(0, 0)
_ONE_SECOND = timedelta(seconds=1)


class InvalidTimezone(ValueError):
    """The named timezone is not in the tz database."""


def load_zone(name: str) -> ZoneInfo:
    """Return the zone called `name` or raise InvalidTimezone naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise InvalidTimezone(f"unknown timezone {name!r}") from exc


@dataclass(frozen=True, slots=True)
class Window:
    """A weekly sending window in one timezone. `start`/`end` None mean start/end of day."""

    tz: ZoneInfo
    days: frozenset[int] = ALL_DAYS
    start: time | None = None
    end: time | None = None

    @property
    def always_open(self) -> bool:
        return self.days == ALL_DAYS and self.start is None and self.end is None

    def contains(self, at: datetime) -> bool:
        """True when the instant `at` is inside the window."""
        local = at.astimezone(self.tz)
        wall = local.time().replace(tzinfo=None)
        start = self.start or _MIDNIGHT
        today = local.isoweekday() in self.days
        if self.end is None:
            return today and wall >= start
        if self.end > start:
            return today and start <= wall < self.end
        # Overnight: the part after the opening belongs to today, the part before the
        # closing to yesterday's window.
        yesterday = (local.date() - timedelta(days=1)).isoweekday() in self.days
        return (today and wall >= start) or (yesterday and wall < self.end)

    def _occurrence(self, day: date) -> tuple[datetime, datetime]:
        """The [open, close) instants of the window that opens on local date `day`."""
        start = self.start or _MIDNIGHT
        opens = first_instant_at(day, start, self.tz)
        if self.end is None or self.end <= start:
            closes = first_instant_at(day + timedelta(days=1), self.end or _MIDNIGHT, self.tz)
        else:
            closes = first_instant_at(day, self.end, self.tz)
        return opens, closes

    def next_open(self, at: datetime) -> tuple[datetime, datetime | None]:
        """Return (the first instant >= `at` inside the window, when that stretch closes).

        The close is None for a window that never closes.
        """
        at = at.astimezone(UTC)
        if self.always_open:
            return at, None
        day = at.astimezone(self.tz).date() - timedelta(days=1)
        for offset in range(0, 16):
            d = day + timedelta(days=offset)
            if d.isoweekday() not in self.days:
                continue
            opens, closes = self._occurrence(d)
            if closes <= opens or closes <= at:
                continue
            begin = max(opens, at)
            return begin, self._extend(d, closes)
        raise ValueError("window never opens")  # unreachable for a non-empty `days`

    def _extend(self, day: date, closes: datetime) -> datetime | None:
        """Follow back-to-back daily occurrences (e.g. full days) to the real close."""
        for offset in range(1, 9):
            d = day + timedelta(days=offset)
            if d.isoweekday() not in self.days:
                return closes
            opens, nxt = self._occurrence(d)
            if opens > closes:
                return closes
            closes = max(closes, nxt)
        return None  # open every day, all day, in effect


def first_instant_at(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """The first UTC instant whose local wall time on `day` is at or after `wall`."""
    naive = datetime.combine(day, wall)
    early = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    late = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if early == late:
        return early
    lo, hi = min(early, late), max(early, late)
    if lo.astimezone(tz).replace(tzinfo=None) == naive:
        return lo  # the wall time occurs twice: its first occurrence
    # The wall time falls in a gap: find the jump, to the second, between the two readings.
    target = hi.astimezone(tz).utcoffset()
    while hi - lo > _ONE_SECOND:
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


def window_from_row(
    tz_name: str, days: list[int] | None, start: time | None, end: time | None
) -> Window:
    """Build a Window from a sequence row and the effective timezone name."""
    return Window(
        tz=load_zone(tz_name),
        days=frozenset(days) if days else ALL_DAYS,
        start=start,
        end=end,
    )
