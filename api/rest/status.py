"""Sequences, senders and the pipeline at a glance."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.rest.common import Actor
from ops import (
    status,
)

router = APIRouter(prefix="/api/v1")


@router.get("/status", response_model=status.Overview, tags=["status"])
async def get_status(request: Request, _who: Actor) -> status.Overview:
    """Sequences, senders and the pipeline at a glance (what `ops status` prints)."""
    shared: status.Shared = request.app.state.status
    return await shared.get()
