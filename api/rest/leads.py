"""Leads: the list (filters and paging), one lead with its deliveries and timeline, and the
actions of the lead lifecycle (retry, stop, pause, resume)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api import models
from api.deps import Pool
from api.problems import Problem
from api.rest.common import Actor, BigId, Page
from core.clock import utcnow
from core.lifecycle import Status
from ops import (
    actions,
    leads,
)

router = APIRouter(prefix="/api/v1")


@router.get("/leads", response_model=models.LeadPage, tags=["leads"])
async def list_leads(
    pool: Pool,
    _who: Actor,
    *,
    status: Status | None = None,
    sequence: Annotated[int | None, Query(gt=0, le=2**63 - 1)] = None,
    email: Annotated[str | None, Query(pattern=r"^[!-~]{1,254}$")] = None,
    paging: Page,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        items = await leads.listing(
            conn,
            status=status,
            sequence_id=sequence,
            email=email,
            after=paging.after_id(),
            limit=paging.limit,
        )
    return paging.page(items, lambda lead: lead["id"])


@router.get(
    "/leads/{lead_id}",
    response_model=models.LeadDetail,
    tags=["leads"],
    responses=models.problems(404),
)
async def get_lead(pool: Pool, _who: Actor, lead_id: BigId) -> dict[str, Any]:
    async with pool.acquire() as conn:
        view = await leads.show(conn, lead_id)
    return {"lead": view.lead, "deliveries": view.deliveries, "events": view.events,
            "suppression": view.suppression,
            "events_dropped_before": view.events_dropped_before}  # fmt: skip


@router.post(
    "/leads/{lead_id}/{action}",
    response_model=models.ActionResult,
    tags=["leads"],
    responses=models.problems(404, 409),
)
async def act_on_lead(
    pool: Pool, who: Actor, lead_id: BigId, action: actions.Action
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        (done,) = await actions.act(conn, action, [lead_id], actor=who, now=utcnow())
    if done.status_before is None:
        raise Problem(404, "Not found", f"no lead {lead_id}")
    if not done.changed:
        raise Problem(
            409, "Conflict", done.why or f"a lead that is {done.status_before} cannot {action}"
        )
    return {"lead_id": lead_id, "action": action, "changed": True,
            "status_before": done.status_before}  # fmt: skip
