"""Sending windows: exact in local time, across DST gaps and repeats, for any zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.windows import InvalidTimezone, Window, first_instant_at, load_zone

ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "UTC",
    "America/St_Johns",
    "Africa/Casablanca",
]

instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2032, 12, 31), timezones=st.just(UTC)
)
walls = st.times().map(lambda t: t.replace(microsecond=0, second=0))


@st.composite
def windows(draw: st.DrawFn) -> Window:
    tz = ZoneInfo(draw(st.sampled_from(ZONES)))
    days = frozenset(draw(st.sets(st.integers(1, 7), min_size=1)))
    start = draw(st.none() | walls)
    end = draw(st.none() | walls)
    return Window(tz=tz, days=days, start=start, end=end)


@given(windows(), instants)
@settings(max_examples=400, deadline=None)
def test_next_open_is_the_first_instant_inside(window: Window, at: datetime) -> None:
    opens, closes = window.next_open(at)
    assert opens >= at
    assert window.contains(opens)
    if opens > at:
        # Nothing in [at, opens) is inside: check the second before and a spread of points.
        assert not window.contains(opens - timedelta(seconds=1))
        span = (opens - at) / 16
        for i in range(16):
            assert not window.contains(at + span * i)
    if closes is not None:
        assert closes > opens
        span = (closes - opens) / 16
        for i in range(16):
            assert window.contains(opens + span * i)


@given(windows(), instants)
@settings(max_examples=200, deadline=None)
def test_a_window_opens_within_eight_days(window: Window, at: datetime) -> None:
    opens, _ = window.next_open(at)
    empty_in_gap = opens - at > timedelta(days=8)
    assert not empty_in_gap or window.start is not None


def test_spring_forward_gap_opens_at_the_jump() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 2026-03-29: clocks jump from 02:00 to 03:00; 02:30 does not exist.
    assert first_instant_at(date(2026, 3, 29), time(2, 30), berlin) == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC
    )
    w = Window(tz=berlin, start=time(2, 30), end=time(4, 0))
    opens, closes = w.next_open(datetime(2026, 3, 28, 23, 0, tzinfo=UTC))
    assert opens == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert closes == datetime(2026, 3, 29, 2, 0, tzinfo=UTC)  # 04:00 CEST


def test_fall_back_repeated_hour_uses_first_occurrence() -> None:
    ny = ZoneInfo("America/New_York")
    # 2026-11-01: 01:30 happens twice, first at 05:30 UTC (EDT).
    assert first_instant_at(date(2026, 11, 1), time(1, 30), ny) == datetime(
        2026, 11, 1, 5, 30, tzinfo=UTC
    )


def test_business_hours_in_lead_zone() -> None:
    w = Window(
        tz=ZoneInfo("America/New_York"),
        days=frozenset({1, 2, 3, 4, 5}),
        start=time(9),
        end=time(17),
    )
    # Saturday 2026-11-21 12:00 UTC -> Monday 09:00 EST = 14:00 UTC.
    opens, closes = w.next_open(datetime(2026, 11, 21, 12, 0, tzinfo=UTC))
    assert opens == datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    assert closes == datetime(2026, 11, 23, 22, 0, tzinfo=UTC)
    # Inside the window: opens now, closes at 17:00 local.
    at = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    assert w.next_open(at) == (at, datetime(2026, 11, 24, 22, 0, tzinfo=UTC))


def test_overnight_window_belongs_to_its_opening_day() -> None:
    w = Window(tz=ZoneInfo("UTC"), days=frozenset({5}), start=time(22), end=time(6))
    assert w.contains(datetime(2026, 11, 28, 3, 0, tzinfo=UTC))  # Saturday 03:00, Friday's
    assert not w.contains(datetime(2026, 11, 29, 3, 0, tzinfo=UTC))  # Sunday 03:00


def test_always_open_never_closes() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert Window(tz=ZoneInfo("UTC")).next_open(at) == (at, None)


def test_unknown_timezone_is_named() -> None:
    with pytest.raises(InvalidTimezone, match="Mars/Olympus"):
        load_zone("Mars/Olympus")
