"""Looking at a lead: its row, its sequence and sender, and its timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db import partitions
from db.pool import Conn
from db.queries import query
from ops.errors import NotFound

__all__ = ["NotFound", "find", "listing", "show"]  # NotFound: where callers find it


@dataclass(frozen=True, slots=True)
class LeadView:
    lead: dict[str, Any]
    deliveries: list[dict[str, Any]]
    events: list[dict[str, Any]]
    suppression: dict[str, Any] | None = None  # what suppresses its address, if anything
    # Its events before this instant went with their months (EVENT_RETENTION_DAYS).
    events_dropped_before: datetime | None = None


async def find(conn: Conn, key: str) -> list[int]:
    """Lead ids by id (digits) or by address (every sequence's lead with it)."""
    if key.isascii() and key.isdigit():
        found = await conn.fetchval("SELECT id FROM leads WHERE id = $1", int(key))
        return [] if found is None else [found]
    rows = await conn.fetch(
        "SELECT id FROM leads WHERE lower(email) = lower($1) ORDER BY id", key.strip()
    )
    return [r["id"] for r in rows]


async def show(conn: Conn, lead_id: int) -> LeadView:
    """The lead with its timeline: deliveries by step, events oldest first."""
    lead = await conn.fetchrow(
        """SELECT l.id, l.email, l.first_name, l.last_name, l.company, l.timezone, l.attributes,
                  l.status, l.current_step, l.attempt, l.next_run_at, l.enrolled_at,
                  l.last_sent_at, l.sequence_id, s.name AS sequence, l.sender_id,
                  snd.email AS sender
           FROM leads l JOIN sequences s ON s.id = l.sequence_id
           LEFT JOIN senders snd ON snd.id = l.sender_id WHERE l.id = $1""",
        lead_id,
    )
    if lead is None:
        raise NotFound(f"no lead {lead_id}")
    deliveries = await conn.fetch(
        """SELECT step, message_id, status, attempts, sent_at, smtp_code, error
           FROM deliveries WHERE lead_id = $1 ORDER BY step""",
        lead_id,
    )
    events = await conn.fetch(
        "SELECT id, step, type, at, data FROM events WHERE lead_id = $1 ORDER BY id", lead_id
    )
    held = await conn.fetchrow(query("lead_status", "suppressed"), [lead_id])
    kept = await partitions.kept_since(conn)
    return LeadView(
        dict(lead), [dict(r) for r in deliveries], [dict(r) for r in events],
        {k: held[k] for k in ("suppression", "reason", "created_at")} if held else None,
        kept if kept is not None and lead["enrolled_at"] < kept else None,
    )  # fmt: skip


LIST_FIELDS = (
    "id, email, first_name, last_name, company, status, current_step, next_run_at, "
    "sequence_id, sender_id, enrolled_at"
)


# A listing's filters: each one given adds its condition (fixed text, the value a parameter),
# so every combination has a plan of its own that uses the index for it: a condition such as
# `$2 IS NULL OR status = $2` would get one generic plan that can use none.
_FILTERS = {
    "status": "status = ${}::text",
    "sequence_id": "sequence_id = ${}::bigint",
    "email": "lower(email) = lower(${}::text)",
}


async def listing(
    conn: Conn,
    *,
    status: str | None = None,
    sequence_id: int | None = None,
    email: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Leads in id order after `after` (a cursor), filtered by status, sequence, address."""
    args: list[object] = [after, limit]
    where = ["id > $1"]
    for name, value in (("status", status), ("sequence_id", sequence_id), ("email", email)):
        if value is not None:
            args.append(value)
            where.append(_FILTERS[name].format(len(args)))
    rows = await conn.fetch(
        f"SELECT {LIST_FIELDS} FROM leads WHERE {' AND '.join(where)} ORDER BY id LIMIT $2",
        *args,
    )
    return [dict(r) for r in rows]
