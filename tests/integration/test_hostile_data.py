"""Hostile and careless rows: refused at the door with a message naming the problem, or,
where they got in anyway, failing their own lead and nothing else."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest

from core.unsubscribe import make_token
from db.migrate import MIGRATIONS_DIR, migrate
from db.stops import apply_unsubscribe_token
from runtime.settings import SchedulerSettings
from scheduler.loop import Scheduler
from tests.conftest import MESSAGE_ID_SECRET, _admin, db_url

SETUP = """
    INSERT INTO senders (email) VALUES ('s@acme.test');
    INSERT INTO sequences (name) VALUES ('One'), ('Two');
    INSERT INTO sequence_steps (sequence_id, position, subject, body_text)
    VALUES (1, 1, 'Hi', 'Hello'), (2, 1, 'Hi', 'Hello');
"""


async def test_midnight_means_end_of_day_and_a_start_at_24_is_refused(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO sequences (name, send_from, send_until) VALUES ('n', '09:00', '24:00')"
    )
    assert await pool.fetchval("SELECT send_until FROM sequences") is None
    with pytest.raises(asyncpg.CheckViolationError, match="send_from must be a time of day"):
        await pool.execute("INSERT INTO sequences (name, send_from) VALUES ('n', '24:00')")


@pytest.mark.parametrize("address", ["*@victim.test", "a b@x.test", "nobody", "a@b@c.test"])
async def test_a_lead_is_one_address(pool: asyncpg.Pool, address: str) -> None:
    await pool.execute(SETUP)
    with pytest.raises(asyncpg.CheckViolationError, match="lead email must be one address"):
        await pool.execute("INSERT INTO leads (sequence_id, email) VALUES (1, $1)", address)


async def test_stop_functions_refuse_patterns_and_suppress_no_domain(pool: asyncpg.Pool) -> None:
    for fn in ("record_unsubscribe", "record_reply"):
        with pytest.raises(asyncpg.InvalidParameterValueError, match=f"{fn} takes one email"):
            await pool.fetchval(f"SELECT {fn}('*@victim.test')")
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 0


async def test_one_lead_per_address_and_sequence_whatever_the_case(pool: asyncpg.Pool) -> None:
    await pool.execute(SETUP)
    await pool.execute("INSERT INTO leads (sequence_id, email) VALUES (1, 'bob@x.test')")
    with pytest.raises(asyncpg.UniqueViolationError, match="one lead per address and sequence"):
        await pool.execute("INSERT INTO leads (sequence_id, email) VALUES (1, 'BOB@X.test')")
    await pool.execute("INSERT INTO leads (sequence_id, email) VALUES (2, 'BOB@X.test')")


async def test_upgrade_keeps_the_oldest_duplicate_and_stops_the_others(tmp_path: Path) -> None:
    old = tmp_path / "migrations"
    old.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("000[1-4]_*.sql")):
        shutil.copy(path, old)
    name = f"es_up_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        await migrate(db_url(name), old, tmp_path / "no-functions")
        conn = await asyncpg.connect(db_url(name))
        try:
            await conn.execute(SETUP)
            await conn.execute("""
                UPDATE sequences SET send_from = '08:00', send_until = '24:00' WHERE id = 1;
                INSERT INTO leads (sequence_id, email, enrolled_at) VALUES
                    (1, 'Bob@x.test', now() - interval '2 days'),
                    (1, 'bob@x.test', now() - interval '1 day'),
                    (1, 'BOB@X.TEST', now()),
                    (2, 'bob@x.test', now()),
                    (1, 'amy@x.test', now())""")
            await migrate(db_url(name))
            rows = await conn.fetch("SELECT id, status, duplicate_of FROM leads ORDER BY id")
            assert [tuple(r) for r in rows] == [
                (1, "active", None),
                (2, "stopped", 1),
                (3, "stopped", 1),
                (4, "active", None),  # another sequence
                (5, "active", None),
            ]
            events = await conn.fetch("SELECT lead_id, type, data FROM events ORDER BY lead_id")
            assert [(e["lead_id"], e["type"], e["data"]) for e in events] == [
                (2, "stopped", '{"reason": "duplicate", "duplicate_of": 1}'),
                (3, "stopped", '{"reason": "duplicate", "duplicate_of": 1}'),
            ]
            assert await conn.fetchval("SELECT send_until FROM sequences WHERE id = 1") is None
        finally:
            await conn.close()
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_row_the_driver_cannot_read_fails_its_lead_and_the_batch_goes_on(
    pool: asyncpg.Pool, database: str
) -> None:
    """A value that got past the door (restored from a dump, written with the checks off)
    fails the leads it belongs to; the batch is planned one lead at a time around them."""
    await pool.execute(SETUP)
    await pool.execute("""
        ALTER TABLE sequences DISABLE TRIGGER sequences_normalize;
        UPDATE sequences SET send_until = '24:00' WHERE id = 2;
        ALTER TABLE sequences ENABLE TRIGGER sequences_normalize;
        INSERT INTO leads (sequence_id, sender_id, email)
        SELECT 1 + i % 2, 1, 'lead' || i || '@x.test' FROM generate_series(1, 10) i""")
    scheduler = Scheduler(
        pool,
        SchedulerSettings.model_validate(
            {"database_url": database, "message_id_secret": MESSAGE_ID_SECRET}
        ),
    )
    result = await scheduler.run_once()
    assert (result.claimed, result.outcomes["queued"], result.outcomes["failed"]) == (10, 5, 5)
    rows = await pool.fetch("""SELECT l.sequence_id, l.status, e.data->>'reason' AS reason,
                                      e.data->>'error' AS error
                               FROM leads l JOIN events e ON e.lead_id = l.id
                               WHERE e.type IN ('queued', 'failed')""")
    for r in rows:
        if r["sequence_id"] == 1:
            assert r["status"] == "queued"
        else:
            assert (r["status"], r["reason"]) == ("failed", "invalid_data")
            assert "hour must be in 0..23" in r["error"]


async def test_unsubscribe_tokens_carry_no_address_and_need_a_real_key(pool: asyncpg.Pool) -> None:
    await pool.execute(SETUP)
    await pool.execute("INSERT INTO leads (sequence_id, email) VALUES (1, 'bob@x.test')")
    secret = "k" * 32
    token = make_token(secret, 1)
    assert "bob" not in token
    async with pool.acquire() as conn:
        for key in ("", "short"):
            with pytest.raises(ValueError, match="at least 32 bytes"):
                await apply_unsubscribe_token(conn, key, token)
            with pytest.raises(ValueError, match="at least 32 bytes"):
                make_token(key, 1)
        done = await apply_unsubscribe_token(conn, secret, token)
    assert (done.email, done.stopped) == ("bob@x.test", 1)
