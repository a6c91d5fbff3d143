"""Pacing arithmetic: for any arrival pattern, no gap is short and no rolling cap is exceeded."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from core.pacing import DAY, HOUR, Pacing, gap_after, next_slot

T0 = datetime(2026, 11, 23, tzinfo=UTC)


@st.composite
def rules(draw: st.DrawFn) -> Pacing:
    return Pacing(
        hourly_limit=draw(st.none() | st.integers(1, 30)),
        daily_limit=draw(st.none() | st.integers(1, 120)),
        min_gap_seconds=draw(st.integers(0, 600)),
        jitter_seconds=draw(st.integers(0, 120)),
    )


@given(rules(), st.lists(st.floats(0, 3 * 86400), min_size=1, max_size=150), st.integers(0, 999))
@settings(max_examples=200, deadline=None)
def test_simulated_sends_respect_every_rule(p: Pacing, arrivals: list[float], seed: int) -> None:
    """Each arrival asks for a slot whenever it likes; it sends only when the slot is now."""
    rng = random.Random(seed)
    sends: list[datetime] = []
    gap_until: datetime | None = None
    pending = sorted(T0 + timedelta(seconds=a) for a in arrivals)
    for want in pending:
        now = max(want, sends[-1] if sends else want)
        slot = next_slot(p, now, sends=sends, gap_until=gap_until)
        assert slot >= now
        # A second look at the slot must agree: deferring to it is enough.
        assert next_slot(p, slot, sends=sends, gap_until=gap_until) == slot
        sends.append(slot)
        gap_until = gap_after(p, slot, rng)
    for a, b in itertools.pairwise(sends):
        assert (b - a).total_seconds() >= p.min_gap_seconds - 1e-6
    for i, s in enumerate(sends):
        in_hour = sum(1 for x in sends[: i + 1] if x > s - HOUR)
        in_day = sum(1 for x in sends[: i + 1] if x > s - DAY)
        assert p.hourly_limit is None or in_hour <= p.hourly_limit
        assert p.daily_limit is None or in_day <= p.daily_limit


def test_cap_frees_when_the_oldest_send_leaves_the_hour() -> None:
    p = Pacing(hourly_limit=2)
    sends = [T0, T0 + timedelta(minutes=10)]
    assert next_slot(p, T0 + timedelta(minutes=20), sends=sends) == T0 + HOUR


def test_first_touches_have_their_own_daily_cap() -> None:
    p = Pacing(daily_new_limit=1)
    sends = [T0]
    now = T0 + timedelta(minutes=5)
    assert next_slot(p, now, sends=sends, first_touches=[T0], first_touch=True) == T0 + DAY
    assert next_slot(p, now, sends=sends, first_touches=[T0], first_touch=False) == now


@given(st.integers(0, 300), st.integers(0, 300), st.integers(0, 10**6))
def test_gap_after_is_gap_plus_bounded_jitter(gap: int, jitter: int, seed: int) -> None:
    end = gap_after(Pacing(min_gap_seconds=gap, jitter_seconds=jitter), T0, random.Random(seed))
    assert gap <= (end - T0).total_seconds() <= gap + jitter


def test_unlimited() -> None:
    assert Pacing().unlimited
    assert not Pacing(min_gap_seconds=1).unlimited
