"""The reputation guard's rules (core/guard.py): what an answer says about the sender, when
a window pauses it, the cooldown of a pause for blocks, and warm-up caps against the
booking (core/pacing.py) day by day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import guard, pacing
from core.backoff import SmtpFailure
from core.guard import Health, Kind, Rate, Thresholds

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "message", "stage", "kind"),
    [
        (None, "", None, Kind.DELIVERED),  # no failure: delivered (see below)
        (550, "5.1.1 <x@y.test>: Recipient address rejected: User unknown", "rcpt", Kind.HARD_BOUNCE),
        (550, "5.1.1 no such user", "rcpt", Kind.HARD_BOUNCE),
        (554, "5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org",
         "rcpt", Kind.BLOCK),
        (554, "5.7.1 <x@y.test>: Relay access denied", "rcpt", Kind.BLOCK),
        (550, "5.7.1 Our system has detected that this message is likely unsolicited mail",
         "content", Kind.BLOCK),
        (552, "5.2.2 mailbox full", "rcpt", Kind.SOFT),
        (451, "4.3.0 temporary failure", "data", Kind.SOFT),
        (421, "4.7.0 [TSS04] Messages from 203.0.113.9 temporarily deferred due to unexpected"
              " volume or user complaints", "rcpt", None),
        (450, "4.7.28 Our system has detected an unusual rate of unsolicited mail", "rcpt", None),
        (421, "4.3.2 try again later", "rcpt", Kind.SOFT),  # a server going away
        (None, "connection refused", "connect", None),
        (535, "5.7.8 authentication failed", "connect", None),
    ],
)  # fmt: skip
def test_what_an_answer_says_about_the_sender(
    code: int | None, message: str, stage: str | None, kind: Kind | None
) -> None:
    if kind is Kind.DELIVERED:
        assert guard.kind_of(None) is Kind.DELIVERED
        return
    assert guard.kind_of(SmtpFailure(code, message, stage=stage)) is kind


def test_a_window_pauses_on_the_first_rate_over_its_threshold_once_sampled() -> None:
    limits = Thresholds(min_sample=20)
    assert guard.judge(Health(19, hard_bounces=19), limits) is None  # too few to judge
    crossing = guard.judge(Health(20, hard_bounces=2), limits)
    assert crossing is not None
    assert (crossing.rate, crossing.value, crossing.handoffs) == (Rate.HARD_BOUNCE, 0.1, 20)
    assert crossing.reason() == (
        "hard_bounce_rate 10.0% over the last 20 hand-offs (threshold 5.0%)"
    )
    assert guard.judge(Health(20, hard_bounces=1), limits) is None  # 5% is not above 5%
    assert guard.judge(Health(200, complaints=1), limits) is not None  # 0.5% > 0.3%
    assert guard.judge(Health(400, complaints=1), limits) is None  # 0.25% is not
    over = guard.judge(Health(300, complaints=1, blocks=100), limits)
    assert over is not None
    assert over.rate is Rate.COMPLAINT  # complaints first: the costliest signal
    assert guard.judge(Health(100, blocks=11), limits) is not None
    # In probation after a pause for blocks, one block pauses again, whatever the sample.
    probe = guard.judge(Health(1, blocks=1), limits, probation=True)
    assert probe is not None
    assert probe.rate is Rate.BLOCK
    assert guard.judge(Health(1), limits, probation=True) is None


def test_per_sender_overrides_replace_the_defaults_they_name() -> None:
    row = {"guard_hard_bounce_rate": 0.2, "guard_complaint_rate": None,
           "guard_block_rate": None, "guard_min_sample": 5}  # fmt: skip
    mine = Thresholds().for_sender(row)
    assert (mine.hard_bounce_rate, mine.complaint_rate, mine.min_sample) == (0.2, 0.003, 5)


def test_the_cooldown_doubles_up_to_a_day() -> None:
    first = timedelta(minutes=30)
    waits = [guard.cooldown(None, first)]
    for _ in range(8):
        waits.append(guard.cooldown(waits[-1], first))
    assert waits[:4] == [first, 2 * first, 4 * first, 8 * first]
    assert waits[-1] == guard.LONGEST_COOLDOWN


@given(
    start=st.integers(1, 200),
    increment=st.integers(0, 100),
    target=st.one_of(st.none(), st.integers(1, 2000)),
    day=st.integers(0, 60),
)
def test_the_warm_up_cap_day_by_day(
    start: int, increment: int, target: int | None, day: int
) -> None:
    w = guard.Warmup(start, increment, T0)
    at = T0 + timedelta(days=day, hours=23, minutes=59)
    ramp = start + day * increment
    assert w.cap(target, at) == (ramp if target is None else min(target, ramp))
    assert w.cap(target, T0 - timedelta(days=3)) == w.cap(target, T0)  # not started: day 0


@settings(max_examples=40, deadline=None)
@given(start=st.integers(1, 12), increment=st.integers(0, 8), days=st.integers(1, 5))
def test_the_booking_never_hands_over_more_than_the_day_s_warm_up_cap(
    start: int, increment: int, days: int
) -> None:
    """Book every hand-off the rules allow, as the worker does, over simulated days (the
    clock injected): no 24 hours hold more than the cap of the day they end in, and each
    day reaches its cap."""
    row = {"hourly_limit": None, "daily_limit": 500, "daily_new_limit": None,
           "min_gap_seconds": 0, "jitter_seconds": 0, "warmup_start": start,
           "warmup_increment": increment, "warmup_started_at": T0}  # fmt: skip
    sends: list[datetime] = []
    now = T0
    end = T0 + timedelta(days=days)
    while now < end:
        rules = pacing.Pacing.from_mapping(row, now)
        slot = pacing.next_slot(rules, now, sends=sends, first_touches=[], gap_until=None)
        if slot > now:
            now = slot  # the worker sends it back to wait for its slot
            continue
        sends.append(now)
        now += timedelta(seconds=1)
    for at in sends:
        cap = guard.daily_cap(row, at)
        assert cap is not None
        assert sum(1 for s in sends if at - timedelta(days=1) < s <= at) <= cap
    for d in range(days):
        day_start = T0 + timedelta(days=d)
        in_day = [s for s in sends if day_start <= s < day_start + timedelta(days=1)]
        assert len(in_day) >= 1
    assert len([s for s in sends if s < T0 + timedelta(days=1)]) == min(500, start)
