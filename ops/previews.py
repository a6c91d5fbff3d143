"""A step rendered for one lead (or a sample lead) exactly as the scheduler would render it:
the console's live preview, with template errors before anything is saved."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core import planner
from db.pool import Conn
from ops.definitions import StepSpec
from ops.errors import NotFound
from scheduler import planning

SAMPLE = {
    "email": "ana.lopez@example.com",
    "first_name": "Ana",
    "last_name": "López",
    "company": "Example Co",
    "attributes": {"city": "Lisbon", "title": "Head of Growth"},
}


@dataclass(frozen=True, slots=True)
class Preview:
    lead: str  # whose data filled the template
    sender: str
    subject: str = ""
    text: str = ""
    html: str | None = None
    error: str | None = None


async def preview(
    conn: Conn,
    sequence_id: int,
    step: StepSpec,
    *,
    lead_id: int | None,
    now: datetime,
    seconds: float = 1.0,
    settings: planner.Settings | None = None,
) -> Preview:
    """Render `step` (not yet saved) for lead `lead_id` of the sequence (or a sample lead)."""
    seq = await conn.fetchrow(
        """SELECT s.id, s.timezone, s.send_days, s.send_from, s.send_until,
                  snd.id AS sender_id, snd.email AS sender_email, snd.name AS sender_name
           FROM sequences s
           LEFT JOIN LATERAL (SELECT x.id, x.email, x.name FROM sequence_senders ss
                              JOIN senders x ON x.id = ss.sender_id
                              WHERE ss.sequence_id = s.id ORDER BY x.id LIMIT 1) snd ON true
           WHERE s.id = $1""",
        sequence_id,
    )
    if seq is None:
        raise NotFound(f"no sequence {sequence_id}")
    lead: dict[str, Any] = dict(SAMPLE, id=1, timezone=None, enrolled_at=now)
    if lead_id is not None:
        row = await conn.fetchrow(
            """SELECT id, email, first_name, last_name, company, timezone, attributes,
                      enrolled_at FROM leads WHERE id = $1 AND sequence_id = $2""",
            lead_id,
            sequence_id,
        )
        if row is None:
            raise NotFound(f"no lead {lead_id} in sequence {sequence_id}")
        lead = dict(row)
    sender_email = seq["sender_email"] or "sender@example.com"
    due = planner.DueLead(
        id=lead["id"],
        email=lead["email"],
        first_name=lead["first_name"],
        last_name=lead["last_name"],
        company=lead["company"],
        timezone=lead["timezone"],
        attributes=lead["attributes"] or {},
        current_step=step.position,
        attempt=0,
        enrolled_at=lead["enrolled_at"],
        sequence_id=sequence_id,
        sequence_timezone=seq["timezone"],
        send_days=seq["send_days"],
        send_from=seq["send_from"],
        send_until=seq["send_until"],
        sender_id=seq["sender_id"] or 1,
        sender_email=sender_email,
        sender_name=seq["sender_name"],
        step_position=step.position,
        subject=step.subject,
        body_text=step.body_text,
        body_html=step.body_html,
        suppressed=False,
        thread_subject="(the subject of the first step)",
        thread_message_ids=("<earlier@example.com>",),
    )
    got = await planning.preview(due, settings or planner.Settings(), seconds)
    if isinstance(got, str):
        return Preview(lead["email"], sender_email, error=got)
    return Preview(lead["email"], sender_email, got.subject, got.text, got.html)
