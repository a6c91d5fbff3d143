"""Senders: list, create, change (name and limits; waiting leads are planned again)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api import models
from api.deps import Pool
from api.problems import Problem
from api.rest.common import KEEP, Actor, BigId, Page
from core.clock import utcnow
from ops import (
    definitions,
    senders,
)

router = APIRouter(prefix="/api/v1")


@router.get("/senders", response_model=models.SenderPage, tags=["senders"])
async def list_senders(
    pool: Pool,
    _who: Actor,
    paging: Page,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        items = await definitions.senders(conn, after=paging.after_id(), limit=paging.limit)
    return paging.page(items, lambda sender: sender["id"])


@router.post(
    "/senders",
    response_model=models.Created,
    status_code=201,
    tags=["senders"],
    responses=models.problems(409),
)
async def create_sender(pool: Pool, _who: Actor, body: models.SenderIn) -> dict[str, int]:
    limits = body.model_dump(exclude={"email", "name"})
    async with pool.acquire() as conn:
        sender_id = await definitions.create_sender(conn, body.email, body.name, limits)
    return {"id": sender_id}


@router.patch(
    "/senders/{sender_id}",
    response_model=models.SenderChanged,
    tags=["senders"],
    responses=models.problems(404),
)
async def update_sender(
    pool: Pool, who: Actor, sender_id: BigId, body: models.SenderPatch
) -> dict[str, int]:
    given = body.model_dump(include=body.model_fields_set)
    name = given.pop("name", KEEP)
    guarded = {k: given.pop(k) for k in list(given) if k in senders.GUARD}
    async with pool.acquire() as conn:
        current = await definitions.sender(conn, sender_id)
        if name is not KEEP:
            await definitions.rename_sender(conn, sender_id, name)
        if guarded:
            await senders.set_guard(conn, current["email"], guarded, actor=who, now=utcnow())
        done = await senders.set_limits(conn, current["email"], given, actor=who, now=utcnow())
    return {"id": sender_id, "replanned": done.replanned}


@router.post(
    "/senders/{sender_id}/resume",
    response_model=models.Sender,
    tags=["senders"],
    responses=models.problems(404, 409),
)
async def resume_sender(pool: Pool, who: Actor, sender_id: BigId) -> dict[str, Any]:
    """Resume a sender the reputation guard paused: its window starts anew, its waiting
    leads are planned again. 409 if it is not paused."""
    async with pool.acquire() as conn:
        current = await definitions.sender(conn, sender_id)
        if not await senders.resume(conn, current["email"], actor=who, now=utcnow()):
            raise Problem(409, "Conflict", f"sender {sender_id} is not paused")
        return await definitions.sender(conn, sender_id)
