"""A person's data: erased on request."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from api import models
from api.deps import Pool
from api.rest.common import Actor
from core.clock import utcnow
from ops import people

router = APIRouter(prefix="/api/v1", tags=["people"])


@router.delete("/people/{email}", response_model=models.Erased, responses=models.problems(422))
async def erase_person(
    pool: Pool, who: Actor, email: Annotated[str, Path(max_length=254)]
) -> dict[str, Any]:
    """Erase a person: their leads lose every personal field and attribute, their stored
    replies go, their events keep ids only; the address stays suppressed as its SHA-256.
    Idempotent: again, `leads` is 0."""
    async with pool.acquire() as conn:
        done = await people.erase(conn, email, actor=who, door="api", now=utcnow())
    return {"address_sha256": done.address_sha256, "leads": done.leads, "stopped": done.stopped}
