"""Retry delays and SMTP outcome classification."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.backoff import Outcome, SmtpFailure, classify, retry_delay


@given(st.integers(1, 200), st.floats(0.01, 1000), st.floats(0.01, 1e6), st.integers(0, 2**32))
def test_delay_is_capped_exponential_with_jitter(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    d = retry_delay(attempt, base=base, cap=cap, rng=random.Random(seed))
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    assert ceiling / 2 <= d <= ceiling


def test_delay_grows() -> None:
    rng = random.Random(1)
    mins = [retry_delay(a, base=10, cap=1e9, rng=rng) for a in range(1, 6)]
    assert all(b > a for a, b in itertools.pairwise(mins))


def test_attempt_counts_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        retry_delay(0, base=1, cap=1)


@pytest.mark.parametrize(
    ("code", "text", "outcome"),
    [
        (None, "ConnectionRefusedError", Outcome.TRANSIENT),
        (421, "4.3.2 shutting down", Outcome.TRANSIENT),
        (451, "4.7.1 greylisted", Outcome.TRANSIENT),
        (452, "4.2.2 mailbox full", Outcome.TRANSIENT),
        (550, "5.1.1 no such user", Outcome.BOUNCE),
        (550, "no such user", Outcome.BOUNCE),
        (553, "5.1.3 bad address syntax", Outcome.BOUNCE),
        (550, "5.7.1 rejected by policy", Outcome.PERMANENT),
        (554, "5.6.0 content rejected", Outcome.PERMANENT),
        (552, "5.3.4 message too big", Outcome.PERMANENT),
        (250, "odd", Outcome.TRANSIENT),
    ],
)
def test_classify(code: int | None, text: str, outcome: Outcome) -> None:
    assert classify(SmtpFailure(code, text)) is outcome


def test_lost_reply_after_the_content_is_ambiguous_not_retried() -> None:
    assert classify(SmtpFailure(None, "no reply", after_data=True)) is Outcome.AMBIGUOUS
    # A lost connection before the content went out is safe to retry.
    assert classify(SmtpFailure(None, "connection lost")) is Outcome.TRANSIENT
    # A reply, even after the content, is an answer.
    assert classify(SmtpFailure(451, "4.3.0 later", after_data=True)) is Outcome.TRANSIENT
