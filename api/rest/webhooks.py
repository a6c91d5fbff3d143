"""Webhook endpoints: subscribe (the secret is in this answer only), list, remove, test;
an endpoint's deliveries, and the failed ones replayed."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request, Response

from api import models
from api.deps import Pool
from api.rest.common import Actor, BigId, Page
from core.clock import utcnow
from ops import webhooks

router = APIRouter(prefix="/api/v1", tags=["webhooks"])


@router.post(
    "/webhooks", response_model=models.WebhookCreated, status_code=201,
    responses=models.problems(422),
)  # fmt: skip
async def create_webhook(
    request: Request, pool: Pool, _who: Actor, body: models.WebhookIn
) -> dict[str, Any]:
    """Subscribe an endpoint. Its deliveries are signed with the `secret` of this answer
    (Standard Webhooks); it is not shown again."""
    allow = request.app.state.settings.webhook_allow_private
    async with pool.acquire() as conn:
        added = await webhooks.add(
            conn, body.url, list(body.event_types), body.description,
            allow_private=allow, now=utcnow(),
        )  # fmt: skip
    return {"id": added.id, "url": added.url, "event_types": added.event_types,
            "secret": added.secret}  # fmt: skip


@router.get("/webhooks", response_model=models.WebhookPage)
async def list_webhooks(pool: Pool, _who: Actor, paging: Page) -> dict[str, Any]:
    async with pool.acquire() as conn:
        items = await webhooks.endpoints(conn, after=paging.after_id(), limit=paging.limit)
    return paging.page(items, lambda e: e["id"])


@router.delete("/webhooks/{endpoint_id}", status_code=204, responses=models.problems(404))
async def delete_webhook(pool: Pool, _who: Actor, endpoint_id: BigId) -> Response:
    async with pool.acquire() as conn:
        await webhooks.remove(conn, endpoint_id)
    return Response(status_code=204)


@router.post(
    "/webhooks/{endpoint_id}/test", response_model=models.Queued, status_code=202,
    responses=models.problems(404),
)  # fmt: skip
async def send_test(pool: Pool, _who: Actor, endpoint_id: BigId) -> dict[str, int]:
    """Queue a `webhook.test` message to the endpoint."""
    async with pool.acquire() as conn:
        return {"delivery_id": await webhooks.test(conn, endpoint_id, utcnow())}


@router.get(
    "/webhooks/{endpoint_id}/deliveries", response_model=models.WebhookDeliveryPage,
    responses=models.problems(404),
)  # fmt: skip
async def list_deliveries(
    pool: Pool,
    _who: Actor,
    endpoint_id: BigId,
    paging: Page,
    status: Literal["pending", "failed"] | None = None,
) -> dict[str, Any]:
    """The endpoint's deliveries, newest first (of one status, if given)."""
    before = paging.after_id() or 2**63 - 1
    async with pool.acquire() as conn:
        items = await webhooks.deliveries(
            conn, endpoint_id, status, before=before, limit=paging.limit
        )
    return paging.page(items, lambda d: d["id"])


@router.post(
    "/webhooks/{endpoint_id}/replay", response_model=models.Replayed,
    responses=models.problems(404),
)  # fmt: skip
async def replay_webhook(pool: Pool, _who: Actor, endpoint_id: BigId) -> dict[str, Any]:
    """Every failed delivery of the endpoint tried again now (same webhook-id each)."""
    async with pool.acquire() as conn:
        return {"replayed": await webhooks.replay(conn, utcnow(), endpoint_id=endpoint_id)}
