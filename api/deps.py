"""Dependencies every door of the HTTP service shares (the REST routes and the console)."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request


async def _pool(request: Request) -> asyncpg.Pool:
    # async: FastAPI runs a plain function dependency in a thread, a hop per request.
    pool: asyncpg.Pool = request.app.state.pool
    return pool


Pool = Annotated[asyncpg.Pool, Depends(_pool)]
