"""Replies people work: the inbox (by intent, sender, sequence, handled), a reply's thread,
mark handled, answer (through the pipeline, from the lead's sender, threaded, once)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api import models
from api.deps import Pool
from api.rest.common import Actor, BigId, Page
from core.clock import utcnow
from ops import replies

router = APIRouter(prefix="/api/v1", tags=["replies"])


@router.get("/replies", response_model=models.ReplyPage)
async def list_replies(  # noqa: PLR0917
    pool: Pool,
    _who: Actor,
    paging: Page,
    intent: models.Intent | None = None,
    sender_id: int | None = None,
    sequence_id: int | None = None,
    handled: bool | None = None,
) -> dict[str, Any]:
    """Replies and automatic answers, newest first."""
    async with pool.acquire() as conn:
        items = await replies.listing(
            conn, intent=intent, sender_id=sender_id, sequence_id=sequence_id, handled=handled,
            before=paging.after_id() or 2**63 - 1, limit=paging.limit,
        )  # fmt: skip
    return paging.page(items, lambda r: r["id"])


@router.get("/replies/{reply_id}", response_model=models.ReplyThread,
            responses=models.problems(404))  # fmt: skip
async def get_reply(pool: Pool, _who: Actor, reply_id: BigId) -> dict[str, Any]:
    async with pool.acquire() as conn:
        found = await replies.thread(conn, reply_id)
    return {"reply": found.reply, "thread": [_item(what, row) for what, row in found.items]}


def _item(what: str, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "what": what,
        "at": row.get("sent_at") or row.get("received_at"),
        "subject": row.get("subject"),
        "body": row.get("body"),
        "message_id": row.get("message_id"),
    }


@router.post("/replies/{reply_id}/handled", response_model=models.Reply,
             responses=models.problems(404))  # fmt: skip
async def mark_handled(pool: Pool, who: Actor, reply_id: BigId) -> dict[str, Any]:
    async with pool.acquire() as conn:
        await replies.mark_handled(conn, reply_id, actor=who, now=utcnow())
        return (await replies.thread(conn, reply_id)).reply


@router.post("/replies/{reply_id}/answer", response_model=models.Answered, status_code=202,
             responses=models.problems(404))  # fmt: skip
async def answer(pool: Pool, who: Actor, reply_id: BigId, body: models.AnswerIn) -> dict[str, Any]:
    """Answer from the lead's sender, threaded under the reply; the same text again is the
    first answer (`created: false`), not a second message."""
    async with pool.acquire() as conn:
        done = await replies.answer(conn, reply_id, body.body_text, actor=who, now=utcnow())
    return {"reply_id": done.reply_id, "email_id": done.email_id, "created": done.created}
