"""The FastAPI application: routes, bearer authentication, the database pool."""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
import time as monotonic
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import time
from typing import Annotated, Any, BinaryIO, cast

import asyncpg
import structlog
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST

from api import console, limits, models, problems
from api import metrics as api_metrics
from api.deps import Pool
from api.problems import Problem
from broker.topology import Names
from core.clock import utcnow
from core.lifecycle import Status
from core.unsubscribe import InvalidToken
from db import replicas
from db.migrate import latest_version
from db.pool import create_pool
from db.stops import apply_unsubscribe_token
from ops import (
    actions,
    definitions,
    emails,
    imports,
    leads,
    senders,
    sequences,
    status,
    stops,
    suppressions,
    tokens,
)
from runtime.daemon import every
from runtime.health import Heartbeat
from runtime.settings import ApiSettings
from runtime.startup import check_schema

log = structlog.get_logger()
# A JSON import's most leads in one request (CSV has no such limit: it is streamed).
IMPORT_MAX_ITEMS = 10_000

BigId = Annotated[int, Path(gt=0, le=2**63 - 1)]
# A checked token is trusted this long before the database is asked again (revocation takes
# effect within it; `last_used_at` is written at most this often per token and process).
TOKEN_CACHE_SECONDS = 10.0


class _Tokens:
    def __init__(self) -> None:
        self.seen: dict[bytes, tuple[str, float]] = {}

    async def actor(self, pool: asyncpg.Pool, token: str) -> str | None:
        key = hashlib.sha256(token.encode()).digest()
        hit = self.seen.get(key)
        if hit is not None and monotonic.monotonic() - hit[1] < TOKEN_CACHE_SECONDS:
            return hit[0]
        async with pool.acquire() as conn:
            name = await tokens.authenticate(conn, token, utcnow())
        if name is None:
            self.seen.pop(key, None)
            return None
        self.seen[key] = (name, monotonic.monotonic())
        return name


def _quietly(fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        try:
            await fn()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("database_check_failed", error=str(exc))

    return run


# The bearer scheme in the OpenAPI document (clients and /docs' Authorize button know it); a
# missing or malformed header is our own 401 problem, not FastAPI's 403.
_BEARER = HTTPBearer(
    auto_error=False, description="an API token: `python -m ops token create NAME`"
)


async def _actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None,
) -> str:
    """The name of the caller's token; 401 without a live one."""
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise Problem(401, "Unauthorized", "send Authorization: Bearer <token>")
    known: _Tokens = request.app.state.tokens
    name = await known.actor(request.app.state.pool, token)
    if name is None:
        raise Problem(401, "Unauthorized", "the token is unknown or revoked")
    structlog.contextvars.bind_contextvars(actor=name)
    return name


Actor = Annotated[str, Depends(_actor)]


_KEEP: Any = object()
# A list's paging: the `next_cursor` of the page before (an id), and the page's size.
IdCursor = Annotated[
    str | None,
    Query(pattern=r"^[0-9]{1,18}$", description="the `next_cursor` of the page before"),
]
PageSize = Annotated[int, Query(ge=1, le=500)]


def _page(items: list[Any], limit: int, cursor: Any) -> dict[str, Any]:
    """A page of `items`; its next cursor is the last item's key when the page is full."""
    return {"items": items, "next_cursor": str(cursor) if items and len(items) == limit else None}


def _seq(row: dict[str, Any]) -> dict[str, Any]:
    """A sequence row as the API shows it (times as HH:MM:SS)."""
    for f in ("send_from", "send_until"):
        if row.get(f) is not None:
            row[f] = row[f].isoformat()
    return row


def create_app(settings: ApiSettings, heartbeat: Heartbeat | None = None) -> FastAPI:
    """The application for `settings`; the pool opens and closes with it. Its progress
    (the event loop turns and the database answers) goes to `heartbeat`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = pool = await create_pool(
            settings.database_url, max_size=settings.db_pool_size
        )
        depths = status.QueueDepths(settings.amqp_url, Names.from_prefix(settings.amqp_prefix))
        stop = asyncio.Event()

        async def check() -> None:
            async with pool.acquire() as conn:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), 5)
            if heartbeat is not None:
                heartbeat.beat()

        try:
            await check_schema(pool, latest_version())
            if heartbeat is not None:
                heartbeat.attach(replicas.Roster(pool, heartbeat))
            app.state.status = status.Shared(pool, depths)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(every(2.0, stop, _quietly(check)))
                try:
                    yield
                finally:
                    stop.set()
        finally:
            if heartbeat is not None:
                await heartbeat.detach()
            await depths.close()
            await pool.close()

    app = FastAPI(
        title="Email Scheduler",
        summary="Multi-step email sequences: leads, sequences, senders, suppressions, status.",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
        # operationIds are the route functions' names (get_lead, import_leads, ...), which a
        # generated client turns into its function names.
        generate_unique_id_function=lambda route: route.name,
    )
    problems.install(app)
    limits.install(
        app, max_bytes=settings.api_max_body_bytes, max_json_bytes=settings.api_max_json_bytes
    )
    app.state.tokens = _Tokens()
    app.state.settings = settings

    v1 = APIRouter(prefix="/api/v1", responses=models.problems(401, 422))

    @v1.get("/leads", response_model=models.LeadPage, tags=["leads"])
    async def list_leads(
        pool: Pool,
        _who: Actor,
        *,
        status: Status | None = None,
        sequence: Annotated[int | None, Query(gt=0, le=2**63 - 1)] = None,
        email: Annotated[str | None, Query(pattern=r"^[!-~]{1,254}$")] = None,
        cursor: Annotated[
            str | None,
            Query(pattern=r"^[0-9]{1,18}$", description="the `next_cursor` of the page before"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        after = cursor or "0"
        async with pool.acquire() as conn:
            items = await leads.listing(
                conn,
                status=status,
                sequence_id=sequence,
                email=email,
                after=int(after or 0),
                limit=limit,
            )
        more = len(items) == limit
        return {"items": items, "next_cursor": str(items[-1]["id"]) if more else None}

    @v1.get(
        "/leads/{lead_id}",
        response_model=models.LeadDetail,
        tags=["leads"],
        responses=models.problems(404),
    )
    async def get_lead(pool: Pool, _who: Actor, lead_id: BigId) -> dict[str, Any]:
        async with pool.acquire() as conn:
            view = await leads.show(conn, lead_id)
        return {"lead": view.lead, "deliveries": view.deliveries, "events": view.events,
                "suppression": view.suppression}  # fmt: skip

    @v1.post(
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

    @v1.get("/suppressions", response_model=models.SuppressionPage, tags=["suppressions"])
    async def list_suppressions(
        pool: Pool,
        _who: Actor,
        cursor: Annotated[
            str | None, Query(max_length=254, description="the `next_cursor` of the page before")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        async with pool.acquire() as conn:
            rows = await suppressions.listing(conn, limit=limit, after=cursor or "")
        return {
            "items": [
                {"email": r.email, "reason": r.reason, "created_at": r.created_at} for r in rows
            ],
            "next_cursor": rows[-1].email if len(rows) == limit else None,
        }

    @v1.post("/suppressions", response_model=models.SuppressionAdded, tags=["suppressions"])
    async def add_suppression(
        pool: Pool, _who: Actor, body: models.SuppressionIn
    ) -> dict[str, Any]:
        try:
            async with pool.acquire() as conn:
                added, stopped = await suppressions.add(conn, body.email, body.reason)
        except suppressions.InvalidEntry as exc:
            raise Problem(422, "Invalid request", f"email: {exc}") from None
        return {"email": suppressions.check(body.email), "added": added, "stopped": stopped}

    @v1.delete(
        "/suppressions/{entry}",
        status_code=204,
        tags=["suppressions"],
        responses=models.problems(404),
    )
    async def remove_suppression(
        pool: Pool, who: Actor, entry: Annotated[str, Path(max_length=254)]
    ) -> None:
        try:
            async with pool.acquire() as conn:
                if not await suppressions.remove(conn, entry, actor=who, now=utcnow()):
                    raise Problem(404, "Not found", f"{entry!r} is not suppressed")
        except suppressions.InvalidEntry:
            raise Problem(404, "Not found", f"{entry!r} is not suppressed") from None

    async def _stop(pool: asyncpg.Pool, body: models.Address, reply: bool) -> dict[str, Any]:
        try:
            async with pool.acquire() as conn:
                n = await (stops.reply if reply else stops.unsubscribe)(conn, body.email)
        except ValueError as exc:
            raise Problem(422, "Invalid request", f"email: {exc}") from None
        return {"email": body.email.lower(), "stopped": n}

    @v1.post("/replies", response_model=models.Stopped, tags=["stops"])
    async def reply(pool: Pool, _who: Actor, body: models.Address) -> dict[str, Any]:
        """The address replied (record_reply): its leads stop."""
        return await _stop(pool, body, reply=True)

    @v1.post("/unsubscribes", response_model=models.Stopped, tags=["stops"])
    async def unsubscribe(pool: Pool, _who: Actor, body: models.Address) -> dict[str, Any]:
        """The address unsubscribed (record_unsubscribe): suppressed, its leads stop."""
        return await _stop(pool, body, reply=False)

    def _times(body: dict[str, Any]) -> dict[str, Any]:
        for f in ("send_from", "send_until"):
            value = body.get(f)
            if value is not None:
                # 24:00 (only an end may say it) is the end of the day: stored as NULL.
                body[f] = None if value.startswith("24:") else time.fromisoformat(value)
        return body

    @v1.get("/sequences", response_model=models.SequencePage, tags=["sequences"])
    async def list_sequences(
        pool: Pool,
        _who: Actor,
        cursor: IdCursor = None,
        limit: PageSize = 100,
    ) -> dict[str, Any]:
        async with pool.acquire() as conn:
            items = await definitions.sequences(conn, after=int(cursor or 0), limit=limit)
        return _page([_seq(i) for i in items], limit, items[-1]["id"] if items else None)

    @v1.post(
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

    @v1.get(
        "/sequences/{seq_id}",
        response_model=models.Sequence,
        tags=["sequences"],
        responses=models.problems(404),
    )
    async def get_sequence(pool: Pool, _who: Actor, seq_id: BigId) -> dict[str, Any]:
        async with pool.acquire() as conn:
            return _seq(await definitions.sequence(conn, seq_id))

    @v1.patch(
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

    @v1.post(
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

    @v1.post(
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

    @v1.get(
        "/sequences/{seq_id}/steps",
        response_model=list[models.Step],
        tags=["sequences"],
        responses=models.problems(404),
    )
    async def list_steps(pool: Pool, _who: Actor, seq_id: BigId) -> list[dict[str, Any]]:
        async with pool.acquire() as conn:
            return await definitions.steps(conn, seq_id)

    @v1.put(
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

    @v1.post(
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
        return JSONResponse(
            answer.model_dump(mode="json"), status_code=201 if done.created else 200
        )

    @v1.get("/senders", response_model=models.SenderPage, tags=["senders"])
    async def list_senders(
        pool: Pool,
        _who: Actor,
        cursor: IdCursor = None,
        limit: PageSize = 100,
    ) -> dict[str, Any]:
        async with pool.acquire() as conn:
            items = await definitions.senders(conn, after=int(cursor or 0), limit=limit)
        return _page(items, limit, items[-1]["id"] if items else None)

    @v1.post(
        "/senders",
        response_model=models.Created,
        status_code=201,
        tags=["senders"],
        responses=models.problems(409),
    )
    async def create_sender(pool: Pool, _who: Actor, body: models.SenderIn) -> dict[str, int]:
        limits = body.model_dump(exclude={"email", "name"})
        async with pool.acquire() as conn:
            sender_id = await definitions.create_sender(conn, body.email, body.name, limits)
        return {"id": sender_id}

    @v1.patch(
        "/senders/{sender_id}",
        response_model=models.SenderChanged,
        tags=["senders"],
        responses=models.problems(404),
    )
    async def update_sender(
        pool: Pool, who: Actor, sender_id: BigId, body: models.SenderPatch
    ) -> dict[str, int]:
        given = body.model_dump(include=body.model_fields_set)
        name = given.pop("name", _KEEP)
        async with pool.acquire() as conn:
            current = await definitions.sender(conn, sender_id)
            if name is not _KEEP:
                await definitions.rename_sender(conn, sender_id, name)
            done = await senders.set_limits(conn, current["email"], given, actor=who, now=utcnow())
        return {"id": sender_id, "replanned": done.replanned}

    @v1.get("/status", response_model=status.Overview, tags=["status"])
    async def get_status(request: Request, _who: Actor) -> status.Overview:
        """Sequences, senders and the pipeline at a glance (what `ops status` prints)."""
        shared: status.Shared = request.app.state.status
        return await shared.get()

    app.include_router(v1)

    @app.get(
        "/metrics", response_class=PlainTextResponse, tags=["service"],
        responses=models.problems(401),
    )  # fmt: skip
    async def get_metrics(request: Request, _who: Actor) -> PlainTextResponse:
        """Prometheus text format: this process's metrics and the status gauges (they name
        senders' addresses and sequences: a token, as for the REST API; Prometheus sends it
        with `authorization: {credentials_file: …}`)."""
        shared: status.Shared = request.app.state.status
        return PlainTextResponse(
            api_metrics.render(await shared.get()), media_type=CONTENT_TYPE_LATEST
        )

    @app.get(
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

    secret = settings.unsubscribe_secret.get_secret_value()

    def confirm_page() -> HTMLResponse:
        # A GET never unsubscribes: mail scanners follow links. The form posts back to the
        # address it was opened at, whatever prefix a proxy serves the API under.
        return HTMLResponse(
            _PAGE.format(
                body='<form method="post"><p>Stop receiving these emails?</p>'
                '<button type="submit">Unsubscribe</button></form>'
            )
        )

    async def apply_one_click(pool: asyncpg.Pool, token: str) -> HTMLResponse:
        """RFC 8058 one-click: applies at once; again is harmless."""
        try:
            async with pool.acquire() as conn:
                await apply_unsubscribe_token(conn, secret, token)
        except InvalidToken:
            return HTMLResponse(_PAGE.format(body="<p>This link is not valid.</p>"), 400)
        except ValueError:  # no secret configured: nothing can be verified
            return HTMLResponse(_PAGE.format(body="<p>Unsubscribing is not set up.</p>"), 503)
        return HTMLResponse(_PAGE.format(body="<p>You are unsubscribed.</p>"))

    # The link a message carries is UNSUBSCRIBE_URL/{token}; `/u?token=` is the form of
    # links in mail sent before, still honoured.
    @app.get("/u/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def unsubscribe_page(token: Annotated[str, Path(max_length=800)]) -> HTMLResponse:
        return confirm_page()

    @app.get("/u", response_class=HTMLResponse, include_in_schema=False)
    async def unsubscribe_page_query(token: Annotated[str, Query(max_length=800)]) -> HTMLResponse:
        return confirm_page()

    @app.post("/u/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def unsubscribe_now(
        pool: Pool, token: Annotated[str, Path(max_length=800)]
    ) -> HTMLResponse:
        return await apply_one_click(pool, token)

    @app.post("/u", response_class=HTMLResponse, include_in_schema=False)
    async def unsubscribe_now_query(
        pool: Pool, token: Annotated[str, Query(max_length=800)]
    ) -> HTMLResponse:
        return await apply_one_click(pool, token)

    console.install(app, settings)
    return app


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Unsubscribe</title>
</head><body><main>{body}</main></body></html>"""
