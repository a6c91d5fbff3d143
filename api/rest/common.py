"""What every REST route shares: the bearer token (the caller's name), ids in paths, paging,
and the router all resources hang from."""

from __future__ import annotations

import hashlib
import time as monotonic
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
import structlog
from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api import roles
from api.problems import Problem
from core.clock import utcnow
from db import audit
from ops import tokens

BigId = Annotated[int, Path(gt=0, le=2**63 - 1)]
# A checked token is trusted this long before the database is asked again (revocation takes
# effect within it; `last_used_at` is written at most this often per token and process).
TOKEN_CACHE_SECONDS = 10.0
# Marks a field a PATCH leaves out.
KEEP: Any = object()


class Tokens:
    """The tokens this process has checked lately (app.state.tokens)."""

    def __init__(self) -> None:
        self.seen: dict[bytes, tuple[tokens.Caller, float]] = {}

    async def caller(self, pool: asyncpg.Pool, token: str) -> tokens.Caller | None:
        key = hashlib.sha256(token.encode()).digest()
        hit = self.seen.get(key)
        if hit is not None and monotonic.monotonic() - hit[1] < TOKEN_CACHE_SECONDS:
            return hit[0]
        async with pool.acquire() as conn:
            caller = await tokens.authenticate(conn, token, utcnow())
        if caller is None:
            self.seen.pop(key, None)
            return None
        self.seen[key] = (caller, monotonic.monotonic())
        return caller


# The bearer scheme in the OpenAPI document (clients and /docs' Authorize button know it); a
# missing or malformed header is our own 401 problem, not FastAPI's 403.
_BEARER = HTTPBearer(
    auto_error=False, description="an API token: `python -m ops token create NAME`"
)


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None,
) -> str:
    """The name of the caller's token; 401 without a live one, 403 when its role is below
    what the route needs (api/roles.py)."""
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise Problem(401, "Unauthorized", "send Authorization: Bearer <token>")
    known: Tokens = request.app.state.tokens
    caller = await known.caller(request.app.state.pool, token)
    if caller is None:
        raise Problem(401, "Unauthorized", "the token is unknown or revoked")
    structlog.contextvars.bind_contextvars(actor=caller.name)
    try:
        roles.require(request, caller.role)
    except roles.Forbidden as exc:
        raise Problem(403, "Forbidden", f"token {caller.name!r}: {exc}") from None
    audit.acting(caller.name, "api")
    return caller.name


Actor = Annotated[str, Depends(authenticated)]


@dataclass(frozen=True, slots=True)
class Paging:
    """A list's page: `cursor` is the `next_cursor` of the page before (opaque to clients:
    an id, or an address for suppressions), `limit` the page's size."""

    cursor: str | None
    limit: int

    def after_id(self) -> int:
        """The id a page of id-ordered items starts after."""
        if self.cursor is None:
            return 0
        if not (self.cursor.isascii() and self.cursor.isdigit() and len(self.cursor) <= 18):
            raise Problem(
                422, "Invalid request", "cursor: not a cursor of this list",
                errors=[{"field": "cursor", "message": "not a cursor of this list"}],
            )  # fmt: skip
        return int(self.cursor)

    def page(self, items: list[Any], key: Any) -> dict[str, Any]:
        """The answer: `items`, and the next cursor (`key` of the last item) when the page
        is full."""
        full = bool(items) and len(items) == self.limit
        return {"items": items, "next_cursor": str(key(items[-1])) if full else None}


async def _paging(
    cursor: Annotated[
        str | None,
        Query(pattern=r"^[!-~]{1,254}$", description="the `next_cursor` of the page before"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="items per page")] = 100,
) -> Paging:
    return Paging(cursor, limit)


Page = Annotated[Paging, Depends(_paging)]
