"""The worker's per-message decision: stale copies, stops, windows, the ambiguous window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.gate import (
    Ambiguous,
    AmbiguousPolicy,
    DeliveryState,
    Drop,
    LeadState,
    Requeue,
    Send,
    Settle,
    StopLead,
    decide,
)
from core.schemas import SendJob

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
JOB = SendJob(
    lead_id=1,
    step=2,
    attempt=1,
    sender_id=1,
    from_address="a@acme.test",
    to_address="b@example.test",
    subject="s",
    text="t",
    message_id="<1.2.x@acme.test>",
    not_after=NOW + timedelta(hours=1),
)


def lead(**kw: object) -> LeadState:
    base: dict[str, object] = {
        "status": "queued",
        "current_step": 2,
        "attempt": 1,
        "sequence_status": "active",
        "suppressed": False,
    }
    base.update(kw)
    return LeadState(**base)  # type: ignore[arg-type]


def go(
    lead_state: LeadState | None,
    delivery: DeliveryState | None = None,
    *,
    redelivered: bool = False,
    policy: AmbiguousPolicy = AmbiguousPolicy.SKIP,
    job: SendJob = JOB,
    now: datetime = NOW,
) -> object:
    return decide(job, lead_state, delivery, now=now, redelivered=redelivered, policy=policy)


def test_fresh_message_is_sent() -> None:
    assert go(lead()) == Send(reclaim=False)


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (None, "lead_missing"),
        (lead(attempt=2), "stale_message"),
        (lead(current_step=3), "stale_message"),
        (lead(status="paused"), "lead_paused"),
        (lead(status="stopped"), "lead_stopped"),
    ],
)
def test_messages_that_must_not_send(state: LeadState | None, reason: str) -> None:
    assert go(state) == Drop(reason)


def test_suppressed_in_flight_stops() -> None:
    assert go(lead(suppressed=True)) == StopLead("suppressed")


def test_paused_sequence_and_closed_window_requeue() -> None:
    assert go(lead(sequence_status="paused")) == Requeue(NOW, "sequence_paused")
    late = NOW + timedelta(hours=2)
    assert go(lead(), now=late) == Requeue(late, "window_missed")


def test_sent_step_is_never_sent_again() -> None:
    assert go(lead(), DeliveryState("sent", None), redelivered=True) == Settle("sent")


def test_live_claim_elsewhere_drops_a_duplicate() -> None:
    live = DeliveryState("sending", NOW + timedelta(minutes=1))
    assert go(lead(), live) == Drop("in_flight_elsewhere")


def test_stale_claim_is_ambiguous_or_resent_by_policy() -> None:
    live = DeliveryState("sending", NOW + timedelta(minutes=1))
    expired = DeliveryState("sending", NOW - timedelta(seconds=1))
    assert go(lead(), live, redelivered=True) == Ambiguous()
    assert go(lead(), expired) == Ambiguous()
    assert go(lead(), expired, policy=AmbiguousPolicy.RESEND) == Send(reclaim=True)


def test_retry_after_deferral_is_sent() -> None:
    assert go(lead(), DeliveryState("deferred", None)) == Send(reclaim=False)
