"""One registry of event types: the table's CHECK constraint and core.events agree, and the
count trigger keys an event as core.events.key does."""

from __future__ import annotations

import re

import asyncpg
import pytest

from core import events


async def test_the_table_takes_exactly_the_registered_types(pool: asyncpg.Pool) -> None:
    definition = await pool.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1",
        "events_type_registered",
    )
    assert set(re.findall(r"'([a-z_]+)'::text", definition)) == {t.value for t in events.EventType}
    with pytest.raises(ValueError, match=r"not in core\.events"):
        events.check("replied")


async def test_the_trigger_keys_events_as_the_registry_does(pool: asyncpg.Pool) -> None:
    reasons = [None, "replied", "unsubscribed", "bounced", "complained", "suppressed", "x"]
    for event_type in events.EventType:
        for reason in reasons:
            data = {} if reason is None else {"reason": reason}  # the pool's jsonb codec
            got = await pool.fetchval("SELECT event_key($1, $2::jsonb)", event_type.value, data)
            assert got == events.key(event_type, reason), (event_type, reason)
    # Every outcome is reachable from a type the product writes.
    keys = {events.key(t, r) for t in events.EventType for r in reasons}
    assert set(events.OUTCOMES) <= keys
