"""The console's webhooks page: endpoints (the signing secret shown once, when added), a test
message, removal, and the deliveries given up on, replayed."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from api.console.pages import Checked, User, _back, page, problem
from api.deps import Pool
from core import webhooks as core
from core.clock import utcnow
from ops import webhooks
from ops.errors import Invalid, NotFound

log = structlog.get_logger()
router = APIRouter(include_in_schema=False)


async def _page(
    request: Request, pool: Pool, created: webhooks.Added | None = None
) -> HTMLResponse:
    async with pool.acquire() as conn:
        rows = await webhooks.endpoints(conn, limit=1000)
        failed = {
            r["id"]: await webhooks.deliveries(conn, r["id"], "failed", limit=20)
            for r in rows
            if r["failed"]
        }
    return page(
        request, "webhooks.html", title="Webhooks", rows=rows, failed=failed,
        types=core.EVENT_TYPES, created=created,
    )  # fmt: skip


@router.get("/webhooks")
async def webhook_page(request: Request, pool: Pool, _user: User) -> HTMLResponse:
    return await _page(request, pool)


@router.post("/webhooks", dependencies=[Checked])
async def webhook_add(
    request: Request,
    pool: Pool,
    user: User,
    url: Annotated[str, Form(max_length=2000)],
    description: Annotated[str, Form(max_length=500)] = "",
) -> HTMLResponse:
    types = [t for t in (await request.form()).getlist("event_types") if isinstance(t, str)]
    allow = request.app.state.settings.webhook_allow_private
    try:
        async with pool.acquire() as conn:
            added = await webhooks.add(
                conn, url.strip(), types, description.strip(), allow_private=allow, now=utcnow()
            )
    except Invalid as exc:
        return problem(request, 422, str(exc))
    log.info("console_webhook_added", by=user, endpoint_id=added.id, url=added.url)
    return await _page(request, pool, created=added)


@router.post("/webhooks/{endpoint_id}/{action}", dependencies=[Checked])
async def webhook_action(
    request: Request, pool: Pool, user: User, endpoint_id: int, action: str
) -> Response:
    try:
        async with pool.acquire() as conn:
            if action == "remove":
                await webhooks.remove(conn, endpoint_id)
                note = "endpoint removed"
            elif action == "test":
                await webhooks.test(conn, endpoint_id, utcnow())
                note = "test message queued"
            elif action == "replay":
                n = len(await webhooks.replay(conn, utcnow(), endpoint_id=endpoint_id))
                note = f"{n} failed deliveries due again"
            else:
                return problem(request, 404, f"no action {action!r}")
    except NotFound as exc:
        return problem(request, 404, str(exc))
    log.info("console_webhook_changed", by=user, endpoint_id=endpoint_id, action=action)
    return _back(request, "/webhooks", note)
