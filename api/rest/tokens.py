"""API tokens: created (the token is in that answer only), listed without secrets, revoked."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from api import models
from api.deps import Pool
from api.problems import Problem
from api.rest.common import Actor
from core.clock import utcnow
from core.roles import Role
from ops import tokens

router = APIRouter(prefix="/api/v1", tags=["tokens"])


@router.post(
    "/tokens", response_model=models.TokenCreated, status_code=201,
    responses=models.problems(409, 422),
)  # fmt: skip
async def create_token(pool: Pool, _who: Actor, body: models.TokenIn) -> dict[str, Any]:
    """A new bearer token with a role; the token is in this answer only (stored hashed)."""
    role = Role(body.role)
    async with pool.acquire() as conn:
        try:
            secret = await tokens.create(conn, body.name.strip(), role)
        except tokens.TokenExists as exc:
            raise Problem(409, "Conflict", str(exc)) from None
        except ValueError as exc:
            raise Problem(
                422,
                "Invalid request",
                f"name: {exc}",
                errors=[{"field": "name", "message": str(exc)}],
            ) from None
    return {"name": body.name.strip(), "role": role.value, "token": secret}


@router.get("/tokens", response_model=models.TokenList)
async def list_tokens(pool: Pool, _who: Actor) -> dict[str, Any]:
    """Every token, live and revoked, without its secret."""
    async with pool.acquire() as conn:
        rows = await tokens.listing(conn)
    return {"items": [asdict(r) for r in rows]}


@router.delete("/tokens/{name}", status_code=204, responses=models.problems(404))
async def revoke_token(
    pool: Pool, _who: Actor, name: Annotated[str, Path(min_length=1, max_length=100)]
) -> Response:
    """Revoke the live token called `name` (takes effect within 10 s in every API process)."""
    async with pool.acquire() as conn:
        if not await tokens.revoke(conn, name, utcnow()):
            raise Problem(404, "Not found", f"no live token named {name!r}")
    return Response(status_code=204)
