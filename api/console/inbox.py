"""The console's inbox: replies by intent, sender, sequence and handled or not; a reply's
thread with an answer form and "mark handled"."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.console.pages import Checked, User, _back, _whole, page, problem
from api.deps import Pool
from core.clock import utcnow
from ops import definitions, replies
from ops.errors import Invalid, NotFound

log = structlog.get_logger()
router = APIRouter(include_in_schema=False)
PAGE = 50


@router.get("/inbox")
async def inbox_page(  # noqa: PLR0917
    request: Request,
    pool: Pool,
    _user: User,
    intent: str = "",
    sender: str = "",
    sequence: str = "",
    handled: str = "no",
    before: Annotated[int, Query(ge=0)] = 0,
) -> HTMLResponse:
    chosen = intent if intent in replies.INTENTS else None
    state = {"no": False, "yes": True}.get(handled)
    async with pool.acquire() as conn:
        items = await replies.listing(
            conn, intent=chosen, sender_id=_whole(sender), sequence_id=_whole(sequence),
            handled=state, before=before or 2**63 - 1, limit=PAGE,
        )  # fmt: skip
        seqs = await definitions.sequences(conn, limit=500)
        senders = await definitions.senders(conn, limit=1000)
    return page(
        request, "inbox.html", title="Inbox", items=items, intents=replies.INTENTS,
        intent=intent, sender=sender, sequence=sequence, handled=handled, seqs=seqs,
        senders=senders, next_before=items[-1]["id"] if len(items) == PAGE else None,
    )  # fmt: skip


@router.get("/inbox/{reply_id}")
async def reply_page(request: Request, pool: Pool, _user: User, reply_id: int) -> HTMLResponse:
    try:
        async with pool.acquire() as conn:
            found = await replies.thread(conn, reply_id)
    except NotFound as exc:
        return problem(request, 404, str(exc))
    return page(request, "reply.html", title="Reply", reply=found.reply, thread=found.items)


@router.post("/inbox/{reply_id}/handled", dependencies=[Checked])
async def reply_handled(request: Request, pool: Pool, user: User, reply_id: int) -> Response:
    try:
        async with pool.acquire() as conn:
            done = await replies.mark_handled(conn, reply_id, actor=user, now=utcnow())
    except NotFound as exc:
        return problem(request, 404, str(exc))
    return _back(request, f"/inbox/{reply_id}", "marked handled" if done else "already handled")


@router.post("/inbox/{reply_id}/answer", dependencies=[Checked])
async def reply_answer(
    request: Request,
    pool: Pool,
    user: User,
    reply_id: int,
    body_text: Annotated[str, Form(max_length=100_000)],
) -> Response:
    try:
        async with pool.acquire() as conn:
            done = await replies.answer(conn, reply_id, body_text, actor=user, now=utcnow())
    except NotFound as exc:
        return problem(request, 404, str(exc))
    except Invalid as exc:
        return problem(request, 422, str(exc))
    log.info("console_answered", by=user, reply_id=reply_id, email_id=done.email_id,
             created=done.created)  # fmt: skip
    return _back(
        request, f"/inbox/{reply_id}", "answer queued" if done.created else "already answered"
    )
