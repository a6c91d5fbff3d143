"""One-off emails ("schedule an email"): one message to one address at an instant, through
the same pipeline as every sequence step (window, pacing, suppressions, outbox, once only).

Each is a lead of the deployment's one-off sequence, whose single step sends the lead's own
subject and text. The request's idempotency key is stored with the lead: the same key again
returns the first answer and schedules nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from core import message
from core.render import DEFAULT_MAX_BYTES
from db.pool import Conn
from db.queries import query
from ops.definitions import Invalid
from ops.leads import NotFound

ONE_OFF_STEP = {
    "subject": "{{ one_off_subject }}",
    "body_text": "{{ one_off_text }}",
    # Rendered with autoescape: the lead's HTML goes out as given (`safe`).
    "body_html": "{% if one_off_html %}{{ one_off_html | safe }}{% endif %}",
}


@dataclass(frozen=True, slots=True)
class Scheduled:
    id: int  # the lead's
    status: str
    send_at: datetime
    idempotency_key: str
    created: bool  # False: the key was used before, this is the first answer


async def one_off_sequence(conn: Conn) -> int:
    """The one-off sequence's id, made (with its step) the first time."""
    seq_id: int | None = await conn.fetchval(query("emails", "one_off_sequence"))
    if seq_id is not None:
        return seq_id
    seq_id = await conn.fetchval(query("emails", "make_one_off_sequence"))
    if seq_id is None:  # made by someone else meanwhile
        made: int = await conn.fetchval(query("emails", "one_off_sequence"))
        return made
    await conn.execute(
        query("sequences", "upsert_step"),
        seq_id,
        1,
        0,
        ONE_OFF_STEP["subject"],
        ONE_OFF_STEP["body_text"],
        ONE_OFF_STEP["body_html"],
    )
    return seq_id


async def schedule(
    conn: Conn,
    *,
    to: str,
    subject: str,
    body_text: str,
    sender: str,
    body_html: str | None = None,
    send_at: datetime | None = None,
    idempotency_key: str | None = None,
    reply_references: list[str] | None = None,
    now: datetime,
) -> Scheduled:
    """Schedule one email; the same `idempotency_key` again returns the first answer."""
    try:
        message.check_address(to)
    except message.InvalidAddress as exc:
        raise Invalid("to", str(exc)) from None
    if len(message.one_line(subject)) > message.MAX_SUBJECT_CHARS:
        raise Invalid("subject", f"longer than {message.MAX_SUBJECT_CHARS} characters")
    if len(body_text) + len(body_html or "") > DEFAULT_MAX_BYTES:
        raise Invalid("body_text", f"text and html together longer than {DEFAULT_MAX_BYTES}")
    for name, value in (("subject", subject), ("body_text", body_text), ("body_html", body_html)):
        if value is not None and "\x00" in value:
            raise Invalid(name, "holds a NUL character")
    key = idempotency_key or f"auto:{uuid.uuid4()}"
    attributes = {"one_off_subject": subject, "one_off_text": body_text, "one_off_html": body_html}
    args = (sender, to, attributes, send_at or now, key, reply_references)
    # One statement, one round trip; the reasons for no row are looked at only then.
    row = await conn.fetchrow(query("emails", "schedule"), *args)
    created = row is not None
    if row is None:
        row = await conn.fetchrow(query("emails", "by_key"), key)
    if row is None:  # not the key: no such sender, or no one-off sequence yet
        if await conn.fetchval(query("emails", "sender"), sender) is None:
            raise NotFound(f"no sender {sender!r}")
        await one_off_sequence(conn)
        row = await conn.fetchrow(query("emails", "schedule"), *args)
        created = row is not None
        if row is None:  # made by a request with the same key meanwhile
            row = await conn.fetchrow(query("emails", "by_key"), key)
            assert row is not None
    return Scheduled(row["id"], row["status"], row["next_run_at"], key, created)
