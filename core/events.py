"""The event types: every `events.type` the product writes is one of `EventType` (the table's
CHECK constraint holds the same list, tests/integration/test_event_types.py compares them),
and the outcomes that status, the funnel and the chart count are derived here and in the
count trigger (db/functions/counts.sql `event_key`) by the same rule."""

from __future__ import annotations

import enum


class EventType(enum.StrEnum):
    # A lead's way through its sequence.
    QUEUED = "queued"
    SENT = "sent"
    SEND_AMBIGUOUS = "send_ambiguous"
    SCHEDULED = "scheduled"
    DEFERRED = "deferred"
    RETRY_SCHEDULED = "retry_scheduled"
    RESCUED = "rescued"
    COMPLETED = "completed"
    STOPPED = "stopped"  # data.reason: replied, unsubscribed, bounced, complained, suppressed, ...
    FAILED = "failed"  # data.reason: bounced, permanent_error, attempts_exhausted, ...
    MESSAGE_REJECTED = "message_rejected"
    # What the inbox heard (§15).
    REPLY_RECEIVED = "reply_received"
    REPLY_UNMATCHED = "reply_unmatched"
    AUTO_REPLIED = "auto_replied"
    SOFT_BOUNCED = "soft_bounced"
    COMPLAINED = "complained"
    INBOUND_IGNORED = "inbound_ignored"
    INBOUND_UNREADABLE = "inbound_unreadable"
    # An out-of-office reply moved the lead's next step past the writer's return.
    RESCHEDULED = "rescheduled"
    # Operators (a stop by an operator is `stopped` with data.actor).
    RETRIED = "retried"
    PAUSED = "paused"
    RESUMED = "resumed"
    SUPPRESSION_LIFTED = "suppression_lifted"
    SEQUENCE_PAUSED = "sequence_paused"
    SEQUENCE_RESUMED = "sequence_resumed"
    SENDER_CHANGED = "sender_changed"
    # The console's inbox: an answer sent to a reply, a reply marked handled.
    OPERATOR_REPLIED = "operator_replied"
    REPLY_HANDLED = "reply_handled"
    # The reputation guard (§16): data.rate, value, threshold, window; resumed: data.by.
    SENDER_PAUSED = "sender_paused"
    SENDER_RESUMED = "sender_resumed"
    # Accounts.
    SMTP_CIRCUIT_OPEN = "smtp_circuit_open"
    SMTP_CIRCUIT_CLOSED = "smtp_circuit_closed"


class Outcome(enum.StrEnum):
    """What a sequence's last day, its funnel and the chart count."""

    SENT = "sent"
    REPLIED = "replied"
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    COMPLAINED = "complained"
    FAILED = "failed"


OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)
# A stop or a failure with one of these reasons is counted as that outcome instead of as a
# plain stop or failure (a complaint is counted from its own `complained` event).
_COUNTED_REASONS = frozenset({"replied", "unsubscribed", "bounced"})


def key(event_type: str, reason: str | None) -> str:
    """What an event is counted as in the maintained activity counts (the trigger's
    `event_key`): its outcome where it has one, else its type."""
    if event_type in (EventType.STOPPED, EventType.FAILED) and reason in _COUNTED_REASONS:
        return reason
    return event_type


def check(event_type: str) -> str:
    """`event_type` if it is registered; ValueError otherwise (a programming error)."""
    if event_type not in _REGISTERED:
        raise ValueError(f"event type {event_type!r} is not in core.events.EventType")
    return event_type


_REGISTERED = frozenset(EventType)
