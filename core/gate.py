"""The worker's decision for one message, given the lead and delivery rows it locked."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from core.lifecycle import Status
from core.schemas import SendJob


class AmbiguousPolicy(enum.StrEnum):
    """What to do with a message a previous holder may have handed to SMTP already."""

    SKIP = "skip"  # an SMTP hand-off that may have happened is not repeated
    RESEND = "resend"  # repeat it with the same Message-ID


@dataclass(frozen=True, slots=True)
class LeadState:
    status: str
    current_step: int
    attempt: int
    sequence_status: str
    suppressed: bool
    # The job's sender row exists. A message naming a sender that is gone is stale: the
    # lead's own sender is planned again once the rescuer hands the lead back.
    sender_exists: bool = True
    # The reputation guard paused the sender (core/guard.py): its leads wait for a resume.
    sender_paused: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryState:
    status: str
    lease_until: datetime | None


@dataclass(frozen=True, slots=True)
class Drop:
    """Nothing to do for this message: ack it (stale copy, duplicate, lead not waiting)."""

    reason: str


@dataclass(frozen=True, slots=True)
class StopLead:
    reason: str


@dataclass(frozen=True, slots=True)
class Requeue:
    """Give the lead back to the scheduler, due at `at` (it re-checks window and pacing)."""

    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Settle:
    """The step already has a final delivery; bring the lead in line with it."""

    delivery_status: str


@dataclass(frozen=True, slots=True)
class Ambiguous:
    """A previous holder may have handed the message to SMTP and died before committing."""


@dataclass(frozen=True, slots=True)
class Send:
    reclaim: bool  # take over a stale claim (resend policy)


Gate = Drop | StopLead | Requeue | Settle | Ambiguous | Send


def decide(
    job: SendJob,
    lead: LeadState | None,
    delivery: DeliveryState | None,
    *,
    now: datetime,
    redelivered: bool,
    policy: AmbiguousPolicy,
) -> Gate:
    """What to do with `job` now. The caller holds the lead's row lock."""
    if lead is None:
        return Drop("lead_missing")
    if lead.current_step != job.step or lead.attempt != job.attempt:
        return Drop("stale_message")
    if lead.status != Status.QUEUED:
        return Drop(f"lead_{lead.status}")
    if lead.suppressed:
        return StopLead("suppressed")
    if not lead.sender_exists:
        return Drop("sender_missing")
    if lead.sequence_status != "active":
        return Requeue(now, "sequence_paused")
    if lead.sender_paused:
        return Requeue(now, "sender_paused")
    reclaim = False
    if delivery is not None:
        if delivery.status in ("sent", "unknown", "failed"):
            return Settle(delivery.status)
        if delivery.status == "sending":
            stale = redelivered or delivery.lease_until is None or delivery.lease_until <= now
            if not stale:
                return Drop("in_flight_elsewhere")
            if policy is AmbiguousPolicy.SKIP:
                return Ambiguous()
            reclaim = True
    if job.not_after is not None and now >= job.not_after:
        return Requeue(now, "window_missed")
    return Send(reclaim=reclaim)
