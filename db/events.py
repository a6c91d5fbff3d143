"""Appending to the events table: one row per thing that happened to a lead."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.events import check
from db.pool import Conn
from db.queries import query


@dataclass(frozen=True, slots=True)
class Event:
    lead_id: int | None
    step: int | None
    type: str
    data: Mapping[str, Any] = field(default_factory=dict)


async def insert_many(conn: Conn, events: list[Event], at: datetime) -> None:
    """Insert events in one statement."""
    if not events:
        return
    await conn.execute(
        query("events", "insert_events"),
        [e.lead_id for e in events],
        [e.step for e in events],
        [check(e.type) for e in events],
        [json.dumps(dict(e.data), default=str) for e in events],
        at,
    )


async def insert(conn: Conn, event: Event, at: datetime) -> None:
    """Insert one event."""
    await conn.execute(
        query("events", "insert_event"),
        event.lead_id,
        event.step,
        check(event.type),
        json.dumps(dict(event.data), default=str),
        at,
    )
