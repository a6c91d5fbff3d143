"""A lead's lifecycle (docs/architecture.md §3): its statuses and the moves between them.

Every statement that writes `leads.status` carries out one of these moves, and guards on the
statuses the move starts from (db/sql/lead_status.sql); tests/integration/test_lifecycle.py
drives random sequences of moves through those statements and through `apply` and requires
the same status after each.
"""

from __future__ import annotations

import enum


class Status(enum.StrEnum):
    ACTIVE = "active"  # waiting for next_run_at
    QUEUED = "queued"  # its step is in flight: outbox, broker or worker
    PAUSED = "paused"  # set and cleared by operators; never sent to
    COMPLETED = "completed"  # every step was sent
    STOPPED = "stopped"  # suppressed, replied, unsubscribed, or stopped by an operator
    FAILED = "failed"  # bad data, a permanent error, a bounce, or attempts exhausted


TERMINAL = frozenset({Status.COMPLETED, Status.STOPPED, Status.FAILED})
LIVE = frozenset({Status.ACTIVE, Status.QUEUED, Status.PAUSED})


class Move(enum.StrEnum):
    QUEUE = "queue"  # the scheduler wrote its step to the outbox
    WAIT = "wait"  # the scheduler found it due too early (window, pacing): later
    SKIP_STEP = "complete"  # the scheduler found no step left to send
    SENT = "sent"  # its step left; a next step is due later
    SENT_LAST = "sent_last"  # its last step left
    REQUEUE = "requeue"  # back to waiting: retry, window missed, pacing, lost message
    STOP = "stop"
    FAIL = "fail"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"  # an operator makes a failed lead's failed step sendable again
    BOUNCE = "bounce"  # a hard bounce of any of its steps came back: it cannot be reached


_A, _Q, _P, _F = Status.ACTIVE, Status.QUEUED, Status.PAUSED, Status.FAILED

# move -> (statuses it starts from, status it ends in)
MOVES: dict[Move, tuple[frozenset[Status], Status]] = {
    Move.QUEUE: (frozenset({_A}), _Q),
    Move.WAIT: (frozenset({_A}), _A),
    Move.SKIP_STEP: (frozenset({_A}), Status.COMPLETED),
    Move.SENT: (frozenset({_Q}), _A),
    Move.SENT_LAST: (frozenset({_Q}), Status.COMPLETED),
    Move.REQUEUE: (frozenset({_Q}), _A),
    Move.STOP: (LIVE, Status.STOPPED),
    Move.FAIL: (frozenset({_A, _Q}), _F),
    Move.PAUSE: (frozenset({_A, _Q}), _P),
    Move.RESUME: (frozenset({_P}), _A),
    Move.RETRY: (frozenset({_F}), _A),
    Move.BOUNCE: (frozenset({_A, _Q}), _F),
}


def apply(status: Status, move: Move) -> Status:
    """The status after `move`; a move that does not start from `status` changes nothing
    (the statements guard on the status, so a late or repeated move is harmless)."""
    starts, ends = MOVES[move]
    return ends if status in starts else status


def allowed(status: Status, move: Move) -> bool:
    """Whether `move` applies to a lead in `status`."""
    return status in MOVES[move][0]
