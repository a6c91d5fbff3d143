"""The service's own routes: Prometheus metrics (with a token) and the health check."""

from __future__ import annotations

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from api import metrics as api_metrics
from api import models
from api.deps import Pool
from api.rest.common import Actor
from ops import (
    status,
)

router = APIRouter()


@router.get(
    "/metrics", response_class=PlainTextResponse, tags=["service"],
    responses=models.problems(401),
)  # fmt: skip
async def get_metrics(request: Request, _who: Actor) -> PlainTextResponse:
    """Prometheus text format: this process's metrics and the status gauges (they name
    senders' addresses and sequences: a token, as for the REST API; Prometheus sends it
    with `authorization: {credentials_file: …}`)."""
    shared: status.Shared = request.app.state.status
    return PlainTextResponse(api_metrics.render(await shared.get()), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/healthz",
    response_model=models.Health,
    tags=["service"],
    responses={503: {"model": models.Health}},
)
async def healthz(pool: Pool) -> JSONResponse:
    try:
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return JSONResponse({"status": f"database unavailable: {exc}"}, status_code=503)
    return JSONResponse({"status": "ok"})
