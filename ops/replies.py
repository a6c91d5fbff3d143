"""The inbox people work: replies (and automatic answers) by intent, sender, sequence and
handled or not; a reply's thread (our steps, their replies, our answers, in order); mark
handled; answer. An answer goes out like every message (outbox, pump, worker) from the
lead's sender's own account, threaded under the reply (In-Reply-To, References), once for
the same text however often the form is sent; event `operator_replied`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core import planner
from db import events
from db.events import Event
from db.pool import Conn
from db.queries import query
from ops import emails
from ops.errors import Invalid, NotFound

INTENTS = ("interested", "not_interested", "out_of_office", "unsubscribe", "other")


def _q(name: str) -> str:
    return query("replies", name)


async def listing(
    conn: Conn,
    *,
    intent: str | None = None,
    sender_id: int | None = None,
    sequence_id: int | None = None,
    handled: bool | None = None,
    before: int = 2**63 - 1,
    limit: int = 100,
) -> list[dict[str, Any]]:
    if intent is not None and intent not in INTENTS:
        raise Invalid("intent", f"one of {', '.join(INTENTS)}")
    rows = await conn.fetch(_q("list"), before, intent, sender_id, sequence_id, handled, limit)
    return [dict(r) for r in rows]


@dataclass(frozen=True, slots=True)
class Thread:
    reply: dict[str, Any]
    # In order: ("step" | "answer", our message) and ("reply", theirs).
    items: list[tuple[str, dict[str, Any]]]


async def thread(conn: Conn, reply_id: int) -> Thread:
    reply = await conn.fetchrow(_q("get"), reply_id)
    if reply is None:
        raise NotFound(f"no reply {reply_id}")
    items: list[tuple[datetime, str, dict[str, Any]]] = []
    if reply["lead_id"] is not None:
        theirs = [dict(r) for r in await conn.fetch(_q("theirs"), reply["lead_id"])]
        ids = [t["message_id"] for t in theirs if t["message_id"]]
        for r in await conn.fetch(_q("ours"), reply["lead_id"], ids):
            if r["sent_at"] is not None:
                items.append((r["sent_at"], r["what"], dict(r)))
        items += [(t["received_at"], "reply", t) for t in theirs]
    items.sort(key=lambda x: x[0])
    return Thread(dict(reply), [(what, row) for _, what, row in items])


async def mark_handled(conn: Conn, reply_id: int, *, actor: str, now: datetime) -> bool:
    """Mark a reply handled (False: it was already)."""
    async with conn.transaction():
        lead_id = await conn.fetchval(_q("handled"), reply_id, now, actor)
        if lead_id is None:
            if await conn.fetchrow(_q("get"), reply_id) is None:
                raise NotFound(f"no reply {reply_id}")
            return False
        await events.insert(
            conn, Event(lead_id, None, "reply_handled", {"reply_id": reply_id, "actor": actor}),
            now,
        )  # fmt: skip
    return True


@dataclass(frozen=True, slots=True)
class Answered:
    reply_id: int
    email_id: int  # the one-off lead that carries the answer
    created: bool  # False: this text was sent to this reply before (nothing new)


async def answer(
    conn: Conn, reply_id: int, body_text: str, *, actor: str, now: datetime
) -> Answered:
    """Answer a reply from the lead's sender, threaded under it; the same text again for
    the same reply is the first answer, not a second message."""
    text = body_text.strip()
    if not text:
        raise Invalid("body_text", "an answer needs some text")
    async with conn.transaction():
        reply = await conn.fetchrow(_q("get"), reply_id)
        if reply is None:
            raise NotFound(f"no reply {reply_id}")
        if reply["lead_id"] is None or reply["sender_email"] is None:
            raise Invalid("reply", "this reply is not matched to a lead and a sender")
        ours = await conn.fetch(_q("ours"), reply["lead_id"], [])
        references = [r["message_id"] for r in ours if r["what"] == "step"]
        if reply["message_id"]:
            references.append(reply["message_id"])
        key = "answer:%d:%s" % (reply_id, hashlib.sha256(text.encode()).hexdigest()[:32])  # noqa: UP031
        scheduled = await emails.schedule(
            conn,
            to=reply["lead_email"],
            subject=planner.reply_subject(reply["subject"] or "your message"),
            body_text=text,
            sender=reply["sender_email"],
            idempotency_key=key,
            reply_references=references or None,
            now=now,
        )
        if scheduled.created:
            await events.insert(
                conn,
                Event(reply["lead_id"], None, "operator_replied",
                      {"reply_id": reply_id, "email_id": scheduled.id, "actor": actor}),
                now,
            )  # fmt: skip
            await conn.execute(_q("handled"), reply_id, now, actor)
    return Answered(reply_id, scheduled.id, scheduled.created)
