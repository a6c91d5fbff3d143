"""Sequences and their steps; importing leads into a sequence (JSON or streamed CSV)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from dataclasses import asdict
from datetime import time
from typing import Annotated, Any, BinaryIO, cast

from fastapi import APIRouter, Path, Query, Request

from api import models
from api.deps import Pool
from api.problems import Problem
from api.rest.common import Actor, BigId, Page
from core.clock import utcnow
from ops import (
    definitions,
    imports,
    sequences,
)

router = APIRouter(prefix="/api/v1")

# A JSON import's most leads in one request (CSV has no such limit: it is streamed).
IMPORT_MAX_ITEMS = 10_000


def _seq(row: dict[str, Any]) -> dict[str, Any]:
    """A sequence row as the API shows it (times as HH:MM:SS)."""
    for f in ("send_from", "send_until"):
        if row.get(f) is not None:
            row[f] = row[f].isoformat()
    return row


def _times(body: dict[str, Any]) -> dict[str, Any]:
    for f in ("send_from", "send_until"):
        value = body.get(f)
        if value is not None:
            # 24:00 (only an end may say it) is the end of the day: stored as NULL.
            body[f] = None if value.startswith("24:") else time.fromisoformat(value)
    return body


@router.get("/sequences", response_model=models.SequencePage, tags=["sequences"])
async def list_sequences(
    pool: Pool,
    _who: Actor,
    paging: Page,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        items = await definitions.sequences(conn, after=paging.after_id(), limit=paging.limit)
    return paging.page([_seq(i) for i in items], lambda seq: seq["id"])


@router.post(
    "/sequences",
    response_model=models.Created,
    status_code=201,
    tags=["sequences"],
    responses=models.problems(409),
)
async def create_sequence(pool: Pool, _who: Actor, body: models.SequenceIn) -> dict[str, int]:
    spec = _times(body.model_dump())
    async with pool.acquire() as conn:
        seq_id = await definitions.create_sequence(conn, definitions.SequenceSpec(**spec))
    return {"id": seq_id}


@router.get(
    "/sequences/{seq_id}",
    response_model=models.Sequence,
    tags=["sequences"],
    responses=models.problems(404),
)
async def get_sequence(pool: Pool, _who: Actor, seq_id: BigId) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return _seq(await definitions.sequence(conn, seq_id))


@router.patch(
    "/sequences/{seq_id}",
    response_model=models.Sequence,
    tags=["sequences"],
    responses=models.problems(404, 409),
)
async def update_sequence(
    pool: Pool, _who: Actor, seq_id: BigId, body: models.SequencePatch
) -> dict[str, Any]:
    changes = _times(body.model_dump(include=body.model_fields_set))
    async with pool.acquire() as conn:
        await definitions.update_sequence(conn, seq_id, changes)
        return _seq(await definitions.sequence(conn, seq_id))


@router.post(
    "/sequences/{seq_id}/leads",
    response_model=models.ImportReport,
    tags=["leads"],
    responses=models.problems(404, 415),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "maxItems": IMPORT_MAX_ITEMS,
                        "items": models.LeadIn.model_json_schema(),
                    }
                },
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def import_leads(
    request: Request,
    pool: Pool,
    _who: Actor,
    seq_id: BigId,
    *,
    dry_run: bool = False,
    on_duplicate: models.OnDuplicate = models.OnDuplicate.SKIP,
    sender: Annotated[str | None, Query(max_length=254)] = None,
) -> dict[str, Any]:
    """Import leads (a JSON array of objects, or CSV with a header row) with the rules of
    `python -m ops import`; rejected rows are listed with their line (or index + 1)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    with tempfile.SpooledTemporaryFile(max_size=1 << 20) as spool:
        async for chunk in request.stream():
            spool.write(chunk)
        spool.seek(0)
        try:
            text = imports.text_of(cast(BinaryIO, spool))
        except imports.Unreadable as exc:
            raise Problem(422, "Invalid request", f"body: {exc}") from None
        rows: Iterable[imports.Record]
        if kind == "text/csv":
            rows = imports.records(text, "csv")
        elif kind in ("application/json", ""):
            try:
                data = json.load(text)
            except (ValueError, RecursionError) as exc:
                detail = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
                raise Problem(422, "Invalid request", f"body: not JSON: {detail}") from None
            if not isinstance(data, list):
                raise Problem(422, "Invalid request", "body: a JSON array of leads")
            if len(data) > IMPORT_MAX_ITEMS:
                raise Problem(
                    422, "Invalid request",
                    f"body: {len(data)} leads, at most {IMPORT_MAX_ITEMS} in one request"
                    " (send CSV for more)",
                )  # fmt: skip
            rows = (
                imports.Record(n, json.dumps(r)[:2000],
                               r if isinstance(r, dict) else "not a JSON object")
                for n, r in enumerate(data, start=1)
            )  # fmt: skip
        else:
            raise Problem(415, "Unsupported media type", "send application/json or text/csv")
        try:
            async with pool.acquire() as conn:
                report = await imports.import_leads(
                    conn, seq_id, rows, sender=sender, on_duplicate=on_duplicate,
                    dry_run=dry_run,
                )  # fmt: skip
        except imports.Unreadable as exc:
            raise Problem(422, "Invalid request", f"body: {exc}") from None
    out = asdict(report)
    out["rejections"] = [{"line": n, "reason": r} for n, r in report.rejections]
    return out


@router.post(
    "/sequences/{seq_id}/{action}",
    response_model=models.Sequence,
    tags=["sequences"],
    responses=models.problems(404),
)
async def pause_or_resume(
    pool: Pool, who: Actor, seq_id: BigId, action: models.SequenceAction
) -> dict[str, Any]:
    status = "paused" if action is models.SequenceAction.PAUSE else "active"
    async with pool.acquire() as conn:
        await sequences.set_status(conn, seq_id, status, actor=who, now=utcnow())
        return _seq(await definitions.sequence(conn, seq_id))


@router.get(
    "/sequences/{seq_id}/steps",
    response_model=list[models.Step],
    tags=["sequences"],
    responses=models.problems(404),
)
async def list_steps(pool: Pool, _who: Actor, seq_id: BigId) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        return await definitions.steps(conn, seq_id)


@router.put(
    "/sequences/{seq_id}/steps/{position}",
    response_model=models.Created,
    tags=["sequences"],
    responses=models.problems(404),
)
async def put_step(
    pool: Pool,
    _who: Actor,
    seq_id: BigId,
    position: Annotated[int, Path(ge=1, le=10_000)],
    body: models.StepIn,
) -> dict[str, int]:
    async with pool.acquire() as conn:
        step_id = await definitions.put_step(
            conn, seq_id, definitions.StepSpec(position=position, **body.model_dump())
        )
    return {"id": step_id}
