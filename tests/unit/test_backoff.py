"""Retry delays and SMTP outcome classification."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.backoff import Outcome, SmtpFailure, classify, retry_delay
from core.inbound import verdict


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
        # Without the stage it answered, a bare "no such user" may be a filter's words
        # (ANSWERS below: at RCPT TO it is the address's).
        (550, "no such user", Outcome.PERMANENT),
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


# The same answers, as a server gives them at send time and as a report quotes them later.
ANSWERS = [
    (550, "5.1.1 <bob@x.test>: Recipient address rejected: User unknown", "rcpt", True),
    (550, "No such user here", "rcpt", True),
    (550, "No such user here", "data", False),  # a content filter's words after DATA
    (550, "5.7.1 Message rejected as spam", "data", False),
    (554, "5.7.1 <bob@x.test>: Relay access denied", "rcpt", False),
    (554, "5.7.1 Client host blocked using zen.spamhaus.org", "rcpt", False),
    (552, "5.2.2 Mailbox full", "rcpt", False),
    (551, "5.1.6 User has moved; please try <b@y.test>", "rcpt", True),
    (550, "5.0.0 Message rejected", "data", False),
]


@pytest.mark.parametrize(("code", "text", "stage", "hard"), ANSWERS)
def test_one_bounce_authority_for_send_time_and_reports(
    code: int, text: str, stage: str, hard: bool
) -> None:
    at_send = classify(SmtpFailure(code, text, stage=stage))
    assert (at_send is Outcome.BOUNCE) is hard
    # The report path: the same answer as a DSN's Diagnostic-Code, the stage in its words.
    command = {"rcpt": "RCPT", "data": "DATA"}[stage]
    status = text.split(maxsplit=1)[0] if text[0].isdigit() else f"{code // 100}.0.0"
    _, reported_hard = verdict(status, f"{code} {text}", answer=True, command=command)
    assert reported_hard is hard
