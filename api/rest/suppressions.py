"""Suppressions: list, add (an address or a whole *@domain; its leads stop), remove."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from api import models
from api.deps import Pool
from api.problems import Problem
from api.rest.common import Actor, Page
from core.clock import utcnow
from ops import (
    suppressions,
)

router = APIRouter(prefix="/api/v1")


@router.get("/suppressions", response_model=models.SuppressionPage, tags=["suppressions"])
async def list_suppressions(
    pool: Pool,
    _who: Actor,
    paging: Page,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        rows = await suppressions.listing(conn, limit=paging.limit, after=paging.cursor or "")
    items = [{"email": r.email, "reason": r.reason, "created_at": r.created_at} for r in rows]
    return paging.page(items, lambda item: item["email"])


@router.post("/suppressions", response_model=models.SuppressionAdded, tags=["suppressions"])
async def add_suppression(pool: Pool, _who: Actor, body: models.SuppressionIn) -> dict[str, Any]:
    try:
        async with pool.acquire() as conn:
            added, stopped = await suppressions.add(conn, body.email, body.reason)
    except suppressions.InvalidEntry as exc:
        raise Problem(422, "Invalid request", f"email: {exc}") from None
    return {"email": suppressions.check(body.email), "added": added, "stopped": stopped}


@router.delete(
    "/suppressions/{entry}",
    status_code=204,
    tags=["suppressions"],
    responses=models.problems(404),
)
async def remove_suppression(
    pool: Pool, who: Actor, entry: Annotated[str, Path(max_length=254)]
) -> None:
    try:
        async with pool.acquire() as conn:
            if not await suppressions.remove(conn, entry, actor=who, now=utcnow()):
                raise Problem(404, "Not found", f"{entry!r} is not suppressed")
    except suppressions.InvalidEntry:
        raise Problem(404, "Not found", f"{entry!r} is not suppressed") from None
