"""The guard's window in PostgreSQL (db/guard.py, db/functions/guard.sql): outcomes recorded
a batch at a time, a pause with its event, the window let go past its size, a resume that
starts a new window, the probe of a pause for blocks, and what the inbox adds later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from core import guard
from core.guard import Kind, Policy, Thresholds
from db import guard as db_guard

NOW = datetime(2026, 12, 5, 10, tzinfo=UTC)
POLICY = Policy(limits=Thresholds(min_sample=20, window=50), first_cooldown=timedelta(minutes=5))
SETUP = """
    INSERT INTO senders (email) VALUES ('a@acme.test'), ('b@acme.test');
    INSERT INTO sequences (name) VALUES ('S');
    INSERT INTO sequence_steps (sequence_id, position, subject, body_text) VALUES (1, 1, 's', 'b');
"""


def _batch(sender: int, kinds: list[Kind], first_lead: int = 1) -> list[db_guard.Outcome]:
    return [db_guard.Outcome(sender, first_lead + i, 1, k) for i, k in enumerate(kinds)]


async def test_a_sender_pauses_once_its_window_says_so_and_resumes_anew(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute(SETUP)
    async with pool.acquire() as conn:
        # 19 hand-offs, 4 dead: too few to judge. The 20th makes 20 % hard bounces.
        kinds = [Kind.HARD_BOUNCE if i % 5 == 0 else Kind.DELIVERED for i in range(19)]
        assert await db_guard.observe(conn, _batch(1, kinds), POLICY, NOW) == []
        (paused,) = await db_guard.observe(conn, _batch(1, [Kind.DELIVERED], 100), POLICY, NOW)
        assert paused.sender_id == 1
        assert paused.crossing.rate is guard.Rate.HARD_BOUNCE
        assert paused.probe_at is None  # bounces wait for a person
        # The other sender, all delivered, is untouched.
        assert await db_guard.observe(conn, _batch(2, [Kind.DELIVERED] * 30), POLICY, NOW) == []
        assert await db_guard.paused_ids(conn) == {1}
        row = await conn.fetchrow("SELECT status, paused_reason FROM senders WHERE id = 1")
        assert tuple(row or ()) == (
            "paused", "hard_bounce_rate 20.0% over the last 20 hand-offs (threshold 5.0%)"
        )  # fmt: skip
        event = await conn.fetchval("SELECT data FROM events WHERE type = 'sender_paused'")
        assert (event["sender_id"], event["rate"], event["value"], event["window"]) == (
            1, "hard_bounce_rate", 0.2, 20
        )  # fmt: skip
        # More outcomes of a paused sender pause nothing twice.
        assert await db_guard.observe(conn, _batch(1, [Kind.HARD_BOUNCE] * 5), POLICY, NOW) == []
        # Resumed: a new window; the old bounces no longer count.
        assert await db_guard.resume(conn, 1, by="cli", now=NOW)
        assert not await db_guard.resume(conn, 1, by="cli", now=NOW)
        assert await db_guard.observe(conn, _batch(1, [Kind.DELIVERED] * 25), POLICY, NOW) == []
        assert await db_guard.paused_ids(conn) == set()
        # The window is let go past its size (50 here).
        assert await conn.fetchval("SELECT count(*) FROM sender_outcomes WHERE sender_id = 1") == 50
        resumed = await conn.fetchval("SELECT data FROM events WHERE type = 'sender_resumed'")
        assert (resumed["by"], resumed["probe"]) == ("cli", False)


async def test_a_pause_for_blocks_probes_and_doubles_its_cooldown(pool: asyncpg.Pool) -> None:
    await pool.execute(SETUP)
    async with pool.acquire() as conn:
        kinds = [Kind.DELIVERED] * 15 + [Kind.BLOCK] * 5
        (paused,) = await db_guard.observe(conn, _batch(1, kinds), POLICY, NOW)
        assert paused.probe_at == NOW + timedelta(minutes=5)
        assert await db_guard.probe_due(conn, NOW + timedelta(minutes=4)) == []
        later = NOW + timedelta(minutes=5)
        assert await db_guard.probe_due(conn, later) == [1]
        # The probe is refused: paused again, for twice as long.
        (again,) = await db_guard.observe(conn, _batch(1, [Kind.BLOCK], 200), POLICY, later)
        assert again.probe_at == later + timedelta(minutes=10)
        # The next probe gets through: probation over, the cooldown forgotten.
        after = later + timedelta(minutes=10)
        assert await db_guard.probe_due(conn, after) == [1]
        assert await db_guard.observe(conn, _batch(1, [Kind.DELIVERED], 300), POLICY, after) == []
        row = await conn.fetchrow(
            "SELECT status, guard_probation, guard_cooldown_seconds FROM senders WHERE id = 1"
        )
        assert tuple(row or ()) == ("active", False, None)


async def test_what_the_inbox_hears_later_counts_against_the_hand_off(pool: asyncpg.Pool) -> None:
    await pool.execute(SETUP)
    async with pool.acquire() as conn:
        await db_guard.observe(conn, _batch(1, [Kind.DELIVERED] * 400), POLICY, NOW)
        # A complaint about a hand-off in the window (leads 351-400 are the last 50).
        (paused,) = await db_guard.amend(conn, [(399, 1, Kind.COMPLAINT)], POLICY, NOW)
        assert paused.crossing.rate is guard.Rate.COMPLAINT
        # One about a hand-off long gone from the window changes nothing.
        assert await db_guard.amend(conn, [(3, 1, Kind.COMPLAINT)], POLICY, NOW) == []
        # A sender's own thresholds: a per-sender override of the complaint rate.
        await conn.execute("UPDATE senders SET guard_complaint_rate = 0.5 WHERE id = 2")
        await db_guard.observe(conn, _batch(2, [Kind.DELIVERED] * 40, 1000), POLICY, NOW)
        assert await db_guard.amend(conn, [(1001, 1, Kind.COMPLAINT)], POLICY, NOW) == []
