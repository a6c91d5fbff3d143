"""Pacing arithmetic: for any arrival pattern, no gap is short and no rolling cap is exceeded."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from core import pacing
from core.pacing import DAY, HOUR, Forecast, Pacing, RateForecast, gap_after, next_slot

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


@given(
    rules(),
    st.lists(st.booleans(), min_size=1, max_size=120),
    st.integers(0, 20),
    st.integers(0, 3 * 86400),
)
@settings(max_examples=200, deadline=None)
def test_forecast_spreads_leads_over_slots_that_respect_every_rule(
    p: Pacing, first_touch: list[bool], new_limit: int, offset: int
) -> None:
    """The scheduler's forecast books slots in order; booked slots obey gap and caps."""
    p = Pacing(
        hourly_limit=p.hourly_limit,
        daily_limit=p.daily_limit,
        daily_new_limit=new_limit or None,
        min_gap_seconds=p.min_gap_seconds,
        jitter_seconds=p.jitter_seconds,
    )
    now = T0 + timedelta(seconds=offset)
    forecast = Forecast(p, [], [])
    slots = [forecast.take(now, first_touch=ft) for ft in first_touch]
    assert all(s >= now for s in slots)
    assert slots == sorted(slots)  # booked in order: earlier in the batch, earlier slot
    for a, b in itertools.pairwise(slots):
        assert (b - a).total_seconds() >= p.min_gap_seconds - 1e-6
    for i, s in enumerate(slots):
        assert p.hourly_limit is None or sum(1 for x in slots[: i + 1] if x > s - HOUR) <= (
            p.hourly_limit
        )
        assert p.daily_limit is None or sum(1 for x in slots[: i + 1] if x > s - DAY) <= (
            p.daily_limit
        )
        firsts = [x for x, ft in zip(slots[: i + 1], first_touch, strict=False) if ft]
        if first_touch[i] and p.daily_new_limit is not None:
            assert sum(1 for x in firsts if x > s - DAY) <= p.daily_new_limit


def test_forecast_puts_follow_ups_in_the_free_slot_and_first_touches_after_the_new_cap() -> None:
    p = Pacing(daily_new_limit=1, min_gap_seconds=60)
    forecast = Forecast(p, [T0 - HOUR], [T0 - HOUR])
    assert forecast.take(T0, first_touch=False) == T0
    assert forecast.take(T0, first_touch=False) == T0 + timedelta(seconds=60)
    # The one first touch of the day went an hour ago: the next one waits for it to age out.
    assert forecast.take(T0, first_touch=True) == T0 - HOUR + DAY


@given(st.floats(0.1, 1000), st.integers(1, 200), st.integers(0, 100))
def test_rate_forecast_never_books_closer_than_its_rate(rate: float, n: int, behind: int) -> None:
    forecast = RateForecast(rate, T0 - timedelta(seconds=behind))
    slots = [forecast.take(T0) for _ in range(n)]
    assert slots[0] == T0
    for a, b in itertools.pairwise(slots):
        assert abs((b - a).total_seconds() - 1 / rate) < 1e-5


@given(
    rules(),
    st.lists(st.integers(1, 2 * 86400), max_size=40),
    st.integers(1, 30),
)
@settings(max_examples=200, deadline=None)
def test_forecast_goes_around_booked_waiting_leads(p: Pacing, waiting: list[int], n: int) -> None:
    """Leads waiting for slots of their own (booked) keep them: new slots keep the gap from
    every booked and new hand-off, and each new slot's window holds no more than its cap."""
    booked = sorted(T0 + timedelta(seconds=s) for s in waiting)
    forecast = Forecast(p, [], [])
    forecast.book(booked, [])
    new = [forecast.take(T0, first_touch=False) for _ in range(n)]
    gap = p.min_gap_seconds + p.jitter_seconds / 2
    every = sorted(booked + new)
    for t in new:
        assert t >= T0
        neighbours = [x for x in every if x != t]
        assert all(abs((t - x).total_seconds()) >= gap - 1e-6 for x in neighbours) or gap == 0
        for limit, span in ((p.hourly_limit, HOUR), (p.daily_limit, DAY)):
            assert limit is None or sum(1 for x in every if t - span < x <= t) <= limit


def test_a_lead_due_at_its_slot_keeps_it_though_others_are_booked_just_after() -> None:
    """A slot within `soon` is sent now (the worker spaces what follows): no walk past the
    slots booked a gap later, which would push it behind all of them."""
    p = Pacing(min_gap_seconds=1)
    forecast = Forecast(p, [], [], gap_until=T0 + timedelta(seconds=0.05))
    forecast.book([T0 + timedelta(seconds=s) for s in (1, 2, 3)], [])
    soon = T0 + timedelta(seconds=1)
    assert forecast.take(T0, first_touch=False, soon=soon) == T0 + timedelta(seconds=0.05)
    later = Forecast(p, [], [], gap_until=T0 + timedelta(seconds=0.05))
    later.book([T0 + timedelta(seconds=s) for s in (1, 2, 3)], [])
    assert later.take(T0, first_touch=False) == T0 + timedelta(seconds=4)


@given(
    due=st.lists(st.integers(0, 50), min_size=1, max_size=72),
    hourly=st.none() | st.integers(1, 20),
    daily=st.none() | st.integers(1, 100),
    gap=st.integers(0, 1800),
    used=st.integers(0, 100),
)
def test_spread_due_keeps_the_caps_and_loses_nothing_it_can_show(
    due: list[int], hourly: int | None, daily: int | None, gap: int, used: int
) -> None:
    rules = pacing.Pacing(hourly_limit=hourly, daily_limit=daily, min_gap_seconds=gap)
    out = pacing.spread_due(due, rules, sent_today=used)
    cap = pacing.hourly_capacity(rules)
    assert len(out) == len(due)
    assert all(n >= 0 for n in out)
    if cap is not None:
        assert all(n <= cap for n in out)
    if daily is not None:
        assert sum(out[:24]) <= max(0, daily - used)
        for day in range(24, len(out), 24):
            assert sum(out[day : day + 24]) <= daily
    # Nothing goes before it is due, and what is held back is only carried, never lost
    # within the forecast: at every hour, shown so far <= due so far.
    for h in range(len(due)):
        assert sum(out[: h + 1]) <= sum(due[: h + 1])
    if cap is None and daily is None:
        assert out == due


def test_spread_due_carries_what_a_cap_holds_back() -> None:
    rules = pacing.Pacing(hourly_limit=2)
    assert pacing.spread_due([5, 0, 0, 0], rules) == [2, 2, 1, 0]
    assert pacing.spread_due([5, 0, 0], pacing.Pacing(min_gap_seconds=1800)) == [2, 2, 1]
    assert pacing.spread_due([3, 3], pacing.Pacing(daily_limit=4), sent_today=2) == [2, 0]
    assert pacing.spread_due([3, 3], None) == [3, 3]


@given(
    rules(),
    st.integers(1, 40),
    st.lists(st.tuples(st.floats(0, 3 * 86400), st.booleans()), min_size=1, max_size=150),
)
@settings(max_examples=200, deadline=None)
def test_a_provider_cap_holds_with_the_senders_own_rules(
    p: Pacing, cap: int, arrivals: list[tuple[float, bool]]
) -> None:
    """Hand-offs to one capped provider among the sender's others, booked as the worker
    books them (the sender's slot, then the provider's): the provider's cap holds in every
    24 hours and the sender's rules still hold for all of them."""
    sends: list[datetime] = []
    capped: list[datetime] = []
    gap_until: datetime | None = None
    for offset, to_capped in sorted(arrivals):
        want = T0 + timedelta(seconds=offset)
        now = max(want, sends[-1] if sends else want)
        slot = next_slot(p, now, sends=sends, gap_until=gap_until)
        if to_capped:
            slot = pacing.provider_slot(cap, capped, slot)
            assert pacing.provider_slot(cap, capped, slot) == slot
            capped.append(slot)
        assert next_slot(p, slot, sends=sends, gap_until=gap_until) == slot
        sends.append(slot)
        sends.sort()
        gap_until = gap_after(p, slot, random.Random(0))
    for s in capped:
        assert sum(1 for x in capped if s - DAY < x <= s) <= cap
