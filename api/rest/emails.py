"""One email to one address, scheduled through the pipeline, idempotent by key."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api import models
from api.deps import Pool
from api.problems import Problem
from api.rest.common import Actor
from core.clock import utcnow
from ops import (
    emails,
)

router = APIRouter(prefix="/api/v1")


@router.post(
    "/emails",
    response_model=models.EmailScheduled,
    status_code=201,
    tags=["emails"],
    responses={**models.problems(404), 200: {"model": models.EmailScheduled}},
)
async def schedule_email(pool: Pool, _who: Actor, body: models.EmailIn) -> JSONResponse:
    """Schedule one email (201); the same idempotency key again answers as the first
    time (200) and sends nothing twice."""
    send_at = body.send_at
    if send_at is not None and send_at.tzinfo is None:
        raise Problem(422, "Invalid request", "send_at: give a timezone (Z or +hh:mm)")
    async with pool.acquire() as conn:
        done = await emails.schedule(
            conn,
            to=body.to,
            subject=body.subject,
            body_text=body.body_text,
            body_html=body.body_html,
            sender=body.sender,
            send_at=send_at,
            idempotency_key=body.idempotency_key,
            now=utcnow(),
        )
    answer = models.EmailScheduled(
        id=done.id, status=done.status, send_at=done.send_at,
        idempotency_key=done.idempotency_key,
    )  # fmt: skip
    return JSONResponse(answer.model_dump(mode="json"), status_code=201 if done.created else 200)
