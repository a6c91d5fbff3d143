"""The statements that write leads.status against core.lifecycle: random sequences of moves,
each carried out by the statement the daemons use for it on a real lead, leave the lead in
the status the machine says after every move."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.lifecycle import Move, Status, apply
from db.queries import query

LATER = datetime(2100, 1, 1, tzinfo=UTC)
ADVANCE = "advance"  # sent or sent_last, as the lead's steps say
OPERATOR = {
    Move.PAUSE: "operator_pause",
    Move.RESUME: "operator_resume",
    Move.RETRY: "operator_retry",
}
DB_MOVES = [
    Move.QUEUE, Move.WAIT, Move.SKIP_STEP, Move.FAIL, Move.STOP, Move.REQUEUE, ADVANCE,
    Move.PAUSE, Move.RESUME, Move.RETRY, "operator_stop", Move.BOUNCE,
]  # fmt: skip
SCHEDULER = {Move.QUEUE: Status.QUEUED, Move.WAIT: Status.ACTIVE, Move.SKIP_STEP: Status.COMPLETED}


async def _carry_out(conn: asyncpg.Connection, move: Move | str) -> Move:
    """Run the daemons' statement for `move` on lead 1; the machine's move it was."""
    step = await conn.fetchval("SELECT current_step FROM leads WHERE id = 1")
    if isinstance(move, Move) and move in SCHEDULER:
        async with conn.transaction():
            if await conn.fetch(query("leads", "claim_due_ids"), LATER, 1):
                await conn.execute(
                    query("lead_status", "apply_decisions"),
                    [1], [SCHEDULER[move]], [None], [1 if move is Move.QUEUE else 0], LATER,
                )  # fmt: skip
        return Move(move)
    if move == "operator_stop":
        await conn.fetch(query("lead_status", "operator_stop"), [1], LATER)
        return Move.STOP
    if isinstance(move, Move) and move in OPERATOR:
        await conn.fetch(query("lead_status", OPERATOR[move]), [1], LATER)
        return move
    if move is Move.BOUNCE:
        await conn.fetch(query("lead_status", "bounce_lead"), 1, LATER)
        return Move.BOUNCE
    if move is Move.FAIL:
        await conn.execute(query("lead_status", "end_lead"), 1, step, "failed", LATER)
    elif move is Move.STOP:
        await conn.fetchval("SELECT stop_leads('bob@x.test', 'test')")
    elif move is Move.REQUEUE:
        await conn.execute(query("lead_status", "requeue_leads"), [1], [step], [LATER], LATER)
    else:
        await conn.fetch(query("lead_status", "advance_leads"), [1], [step], LATER)
        return Move.SENT_LAST if step == 3 else Move.SENT
    return Move(move)


async def _drive(dsn: str, seq: list[Move | str]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("""
            TRUNCATE senders, sequences, leads RESTART IDENTITY CASCADE;
            INSERT INTO senders (email) VALUES ('s@acme.test');
            INSERT INTO sequences (name) VALUES ('S');
            INSERT INTO sequence_steps (sequence_id, position, subject, body_text)
            SELECT 1, p, 's', 'b' FROM generate_series(1, 3) p;
            INSERT INTO leads (sequence_id, sender_id, email) VALUES (1, 1, 'bob@x.test')""")
        status = Status.ACTIVE
        for move in seq:
            done = await _carry_out(conn, move)
            status = apply(status, done)
            got = await conn.fetchval("SELECT status FROM leads WHERE id = 1")
            assert got == status, (seq, done)
    finally:
        await conn.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seq=st.lists(st.sampled_from(DB_MOVES), max_size=25))
def test_status_writes_follow_the_lifecycle(database: str, seq: list[Move | str]) -> None:
    asyncio.run(_drive(database, seq))
