"""Events by month (migration 0022, db/functions/partitions.sql) against a real database: rows
land in their month's partition on both sides of a boundary, the timeline and the counts
read across it; the pump's maintenance makes the months ahead (moving what fell into the
default partition), drops whole months past the retention (status and the timeline then say
so, the counts still hold them), never waits long for a lock and runs once at a time; an
existing table is carried into a partition, online or not, with the same schema."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.topology import Names, connect, declare
from core.clock import utcnow
from db import partitions
from db.migrate import migrate
from db.pool import Conn
from ops import actions, leads, status
from ops.actions import Action
from pump.loop import Pump
from runtime.settings import PumpSettings
from tests.conftest import AMQP_URL
from tests.integration.helpers import fresh_and_older
from tests.integration.test_operations import _schema

SETUP = """
    INSERT INTO senders (email) VALUES ('s@acme.test');
    INSERT INTO sequences (name) VALUES ('S');
    INSERT INTO sequence_steps (sequence_id, position, subject, body_text) VALUES (1, 1, 's', 'b');
    INSERT INTO leads (sequence_id, sender_id, email) VALUES (1, 1, 'a@x.test'), (1, 1, 'b@x.test');
"""
MICRO = timedelta(microseconds=1)


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9000, 1, 1),
                    timezones=st.just(UTC)), st.integers(-30, 30))  # fmt: skip
def test_month_start_is_the_first_instant_of_its_month(at: datetime, months: int) -> None:
    first = partitions.month_start(at)
    assert first <= at < partitions.month_start(at, 1)
    assert (first.day, first.hour, first.minute, first.second, first.microsecond) == (1, 0, 0, 0, 0)
    shifted = partitions.month_start(at, months)
    assert (shifted.year * 12 + shifted.month) - (first.year * 12 + first.month) == months


async def _where(conn: Conn) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT tableoid::regclass::text AS part, type FROM events WHERE lead_id = 1 ORDER BY id"
    )
    return [(r["part"], r["type"]) for r in rows]


async def _act(conn: Conn, action: Action, now: datetime) -> None:
    await actions.act(conn, action, [1], actor="test", now=now)


async def test_events_land_in_their_month_and_read_across_the_boundary(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute(SETUP)
    now = utcnow()
    boundary = partitions.month_start(now, 1)
    this, nxt = (f"events_{m:%Y_%m}" for m in (partitions.month_start(now), boundary))
    async with pool.acquire() as conn:
        # The migration made this month and the two after it, and a default partition.
        names = {r["name"] for r in await conn.fetch("SELECT name FROM event_partitions")}
        assert {this, nxt, f"events_{partitions.month_start(now, 2):%Y_%m}"} <= names
        before = await status.read(conn, None, now)
        await _act(conn, Action.PAUSE, boundary - MICRO)
        await _act(conn, Action.RESUME, boundary)
        assert await _where(conn) == [(this, "paused"), (nxt, "resumed")]
        view = await leads.show(conn, 1)
        assert [e["type"] for e in view.events] == ["paused", "resumed"]
        assert view.events_dropped_before is None
        after = await status.read(conn, None, now)
    assert after.events_kept_since is None
    assert [q.leads for q in after.sequences] == [q.leads for q in before.sequences]


async def test_maintenance_makes_months_ahead_and_moves_what_fell_into_the_default(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute(SETUP)
    far = partitions.month_start(utcnow(), 5) + timedelta(days=3)
    async with pool.acquire() as conn:
        await _act(conn, Action.PAUSE, far)  # no partition for that month yet
        assert await _where(conn) == [("events_default", "paused")]
        changes = await partitions.maintain(conn, far, 400)
        made = {c.partition for c in changes if c.action == "created"}
        assert f"events_{far:%Y_%m}" in made
        assert len(made) == 3  # that month and two more; the ones between stay uncovered
        assert await _where(conn) == [(f"events_{far:%Y_%m}", "paused")]
        assert await conn.fetchval("SELECT count(*) FROM events_default") == 0
        assert await partitions.maintain(conn, far, 400) == []  # nothing left to do


async def test_retention_drops_whole_months_and_status_and_timeline_say_so(
    pool: asyncpg.Pool, database: str, amqp_prefix: str
) -> None:
    await pool.execute(SETUP)
    now = utcnow()
    async with pool.acquire() as conn:
        await _act(conn, Action.PAUSE, now)
        await _act(conn, Action.RESUME, now)
        kept_counts = [q.leads for q in (await status.read(conn, None, now)).sequences]
    # The pump, as it runs, 15 months on with 400 days kept: this month goes, not the later.
    later = partitions.month_start(now, 15) + timedelta(days=2)
    settings = PumpSettings.model_validate(
        {"database_url": database, "amqp_url": AMQP_URL, "amqp_prefix": amqp_prefix,
         "event_retention_days": 400}
    )  # fmt: skip
    broker = await connect(AMQP_URL, name="test")
    try:
        topology = await declare(await broker.channel(), Names.from_prefix(amqp_prefix))
        changes = await Pump(
            pool, topology.exchange, settings, clock=lambda: later
        ).maintain_events()
    finally:
        await broker.close()
    dropped = [c for c in changes if c.action == "dropped"]
    kept_since = later - timedelta(days=400)
    assert dropped
    assert all(c.ends is not None and c.ends <= kept_since for c in dropped)
    assert f"events_{now:%Y_%m}" in {c.partition for c in dropped}
    async with pool.acquire() as conn:
        assert await _where(conn) == []
        view = await leads.show(conn, 1)
        assert view.events == []
        assert view.events_dropped_before == max(c.ends for c in dropped if c.ends)
        after = await status.read(conn, None, later)
        assert after.events_kept_since == view.events_dropped_before
        assert [q.leads for q in after.sequences] == kept_counts  # counts are kept apart
        left = await conn.fetch("SELECT ends FROM event_partitions WHERE dropped_at IS NULL")
        assert all(r["ends"] > kept_since for r in left)
        assert {c.rows for c in dropped if c.partition == f"events_{now:%Y_%m}"} == {2}
        gone = await conn.fetchval(
            "SELECT count(*) FROM pg_class WHERE relname = ANY($1::text[])",
            [c.partition for c in dropped],
        )
        assert gone == 0


async def test_a_drop_that_cannot_lock_waits_for_the_next_run_and_runs_are_one_at_a_time(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute(SETUP)
    later = partitions.month_start(utcnow(), 15)
    reader = await pool.acquire()
    other = await pool.acquire()
    try:
        assert {c.action for c in await partitions.maintain(other, later, 10_000)} == {"created"}
        tx = reader.transaction()
        await tx.start()
        # A long read of the table (of the newest month only: it holds the table itself).
        await reader.fetchval(f"SELECT count(*) FROM events WHERE at >= '{later.isoformat()}'")
        changes = await partitions.maintain(other, later, 400)
        assert changes
        assert {c.action for c in changes} == {"drop_postponed"}
        await tx.rollback()
        changes = await partitions.maintain(other, later, 400)
        assert {c.action for c in changes} == {"dropped"}
        # Two callers at once: one does the work, the other returns at once.
        both = await asyncio.gather(
            partitions.maintain(reader, later + timedelta(days=200), 400),
            partitions.maintain(other, later + timedelta(days=200), 400),
        )
        assert sorted(len(c) > 0 for c in both) == [False, True]
    finally:
        await pool.release(reader)
        await pool.release(other)


def _without_partitions(dump: str) -> list[str]:
    """The dump's statements, minus those about one partition or another (their months
    depend on when and how the table was made)."""
    statements = dump.split(";\n")
    part = re.compile(r"events_(before|default|\d{4}_\d{2})(?![0-9])")
    return [s.strip() for s in statements if not part.search(s)]


@pytest.mark.parametrize("online", [True, False], ids=["online", "plain"])
async def test_an_existing_table_becomes_a_partition_with_its_rows(
    tmp_path: Path, online: bool
) -> None:
    async with fresh_and_older(tmp_path, 22) as (fresh, upgraded):
        conn = await asyncpg.connect(upgraded)
        try:
            await conn.execute(SETUP)
            now = utcnow()
            await _act(conn, Action.PAUSE, now - timedelta(days=40))
            await _act(conn, Action.RESUME, now)
        finally:
            await conn.close()
        await migrate(upgraded, online=online)
        conn = await asyncpg.connect(upgraded)
        try:
            assert await _where(conn) == [("events_before", "paused"), ("events_before", "resumed")]
            bound = await conn.fetchval(
                "SELECT ends FROM event_partitions WHERE name = 'events_before'"
            )
            assert bound == partitions.month_start(now, 2 if online else 1)
            await _act(conn, Action.PAUSE, bound)  # the first month after it
            assert (await _where(conn))[-1] == (f"events_{bound:%Y_%m}", "paused")
            view = await leads.show(conn, 1)
            assert [e["type"] for e in view.events] == ["paused", "resumed", "paused"]
            # The next insert takes the next id of the same sequence.
            ids = [e["id"] for e in view.events]
            assert ids == sorted(ids)
            assert len(set(ids)) == 3
        finally:
            await conn.close()
        assert _without_partitions(_schema(upgraded)) == _without_partitions(_schema(fresh))
