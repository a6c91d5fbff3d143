"""The FastAPI application: its lifespan (the database pool, the status reader), error
answers, body limits, and the routes of api/rest/ and the console."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import structlog
from fastapi import FastAPI

from api import console, limits, models, problems, roles
from api.console import auth as console_auth
from api.rest import (
    audit,
    common,
    emails,
    leads,
    people,
    replies,
    senders,
    sequences,
    service,
    status,
    stops,
    suppressions,
    tokens,
    unsubscribe,
    webhooks,
)
from api.rest.common import Tokens
from broker.topology import Names
from db import audit as audit_db
from db import replicas
from db.migrate import latest_version
from db.pool import create_pool
from ops import status as ops_status
from runtime.daemon import every
from runtime.health import Heartbeat
from runtime.settings import ApiSettings
from runtime.startup import check_schema

log = structlog.get_logger()


def _quietly(fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        try:
            await fn()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("database_check_failed", error=str(exc))

    return run


def create_app(settings: ApiSettings, heartbeat: Heartbeat | None = None) -> FastAPI:
    """The application for `settings`; the pool opens and closes with it. Its progress
    (the event loop turns and the database answers) goes to `heartbeat`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = pool = await create_pool(
            settings.database_url, max_size=settings.db_pool_size, setup=audit_db.on_acquire
        )
        depths = ops_status.QueueDepths(settings.amqp_url, Names.from_prefix(settings.amqp_prefix))
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
            app.state.status = ops_status.Shared(pool, depths)
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
    app.state.tokens = Tokens()
    app.state.settings = settings

    # Routes by resource (api/rest/), in the order they are matched: the import at
    # /sequences/{id}/leads comes before /sequences/{id}/{action}.
    for resource in (
        leads, suppressions, stops, sequences, emails, senders, status, webhooks, replies,
        people, audit, tokens,
    ):  # fmt: skip
        app.include_router(resource.router, responses=models.problems(401, 422))
    app.include_router(service.router)
    app.include_router(unsubscribe.router)
    console.install(app, settings)
    roles.verify(app, (common.authenticated, console_auth.user), console=settings.console_on)
    return app
