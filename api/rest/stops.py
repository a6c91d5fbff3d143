"""Replies and unsubscribes reported by another system: the address's leads stop."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter

from api import models
from api.deps import Pool
from api.problems import Problem
from api.rest.common import Actor
from ops import (
    stops,
)

router = APIRouter(prefix="/api/v1")


async def _stop(pool: asyncpg.Pool, body: models.Address, reply: bool) -> dict[str, Any]:
    try:
        async with pool.acquire() as conn:
            n = await (stops.reply if reply else stops.unsubscribe)(conn, body.email)
    except ValueError as exc:
        raise Problem(422, "Invalid request", f"email: {exc}") from None
    return {"email": body.email.lower(), "stopped": n}


@router.post("/replies", response_model=models.Stopped, tags=["stops"])
async def reply(pool: Pool, _who: Actor, body: models.Address) -> dict[str, Any]:
    """The address replied (record_reply): its leads stop."""
    return await _stop(pool, body, reply=True)


@router.post("/unsubscribes", response_model=models.Stopped, tags=["stops"])
async def unsubscribe(pool: Pool, _who: Actor, body: models.Address) -> dict[str, Any]:
    """The address unsubscribed (record_unsubscribe): suppressed, its leads stop."""
    return await _stop(pool, body, reply=False)
