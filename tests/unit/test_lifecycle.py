"""The lead lifecycle as a machine: random sequences of moves keep its promises."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.lifecycle import LIVE, MOVES, TERMINAL, Move, Status, allowed, apply

moves = st.lists(st.sampled_from(list(Move)), max_size=60)


@given(moves)
def test_random_moves_keep_the_promises(seq: list[Move]) -> None:
    status = Status.ACTIVE  # inserting a lead enrols it
    for move in seq:
        before = status
        status = apply(status, move)
        if not allowed(before, move):
            assert status == before  # a late or repeated move changes nothing
        # Only an operator's retry brings a lead back from a terminal status, and only
        # from failed; completed and stopped are for good.
        if before in TERMINAL and status != before:
            assert (before, move, status) == (Status.FAILED, Move.RETRY, Status.ACTIVE)
        # Nothing is sent to a paused lead: only resume or stop take it out of pause.
        if before is Status.PAUSED and status != before:
            assert move in (Move.RESUME, Move.STOP)
        # A lead is queued only by the scheduler, from waiting.
        if status is Status.QUEUED and before is not Status.QUEUED:
            assert (before, move) == (Status.ACTIVE, Move.QUEUE)
        assert status in LIVE | TERMINAL


def test_every_move_is_defined_and_ends_somewhere_real() -> None:
    assert set(MOVES) == set(Move)
    for starts, ends in MOVES.values():
        assert starts
        assert ends in Status
