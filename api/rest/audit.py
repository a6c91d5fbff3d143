"""The audit trail: who changed what, when, through which door, from what to what."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query

from api import models
from api.deps import Pool
from api.rest.common import Actor, Page
from ops import audit

router = APIRouter(prefix="/api/v1", tags=["audit"])


@router.get("/audit", response_model=models.AuditPage)
async def list_audit(  # noqa: PLR0917
    pool: Pool,
    _who: Actor,
    paging: Page,
    actor: str | None = Query(default=None, max_length=200),
    door: Literal["cli", "api", "console"] | None = None,
    target: str | None = Query(default=None, max_length=200, description="a prefix: senders:3"),
    since: datetime | None = None,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        items = await audit.listing(
            conn, actor=actor, door=door, target=target, since=since,
            before=paging.after_id() or 2**63 - 1, limit=paging.limit,
        )  # fmt: skip
    return paging.page(items, lambda e: e["id"])
