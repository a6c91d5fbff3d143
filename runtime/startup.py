"""Reaching PostgreSQL and RabbitMQ at start-up: wait while they come up, saying so every few
seconds; stop with one line naming the problem and its fix when waiting cannot help."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiormq.exceptions
import asyncpg
import structlog
from yarl import URL

log = structlog.get_logger()
T = TypeVar("T")

# How often a line says we are still waiting.
REPORT_EVERY_SECONDS = 5.0


class StartupError(Exception):
    """A fault that waiting will not cure; the message names it and the fix."""


Classify = Callable[[BaseException], str | None]


async def wait_for(
    what: str,
    connect: Callable[[], Awaitable[T]],
    fatal: Classify,
    transient: tuple[type[BaseException], ...],
    *,
    stop: asyncio.Event | None = None,
    max_delay: float = 5.0,
) -> T:
    """`connect()`, retried with backoff while it fails with a `transient` error.

    Logs `waiting_for_<what>` (attempt, cause) at most every few seconds while waiting;
    raises StartupError at once for an error `fatal` explains (or one not transient).
    """
    loop = asyncio.get_running_loop()
    attempt = 0
    delay = 0.2
    last_report = -REPORT_EVERY_SECONDS
    while True:
        attempt += 1
        try:
            return await connect()
        except Exception as exc:
            reason = fatal(exc)
            if reason is not None:
                raise StartupError(reason) from exc
            if not isinstance(exc, transient):
                raise StartupError(f"cannot reach {what}: {type(exc).__name__}: {exc}") from exc
            if loop.time() - last_report >= REPORT_EVERY_SECONDS:
                last_report = loop.time()
                log.warning(f"waiting_for_{what}", attempt=attempt, cause=_cause(exc))
        if stop is not None and stop.is_set():
            raise asyncio.CancelledError  # asked to stop: a clean exit, not a failure
        await asyncio.sleep(delay * (0.5 + random.random() / 2))
        delay = min(delay * 2, max_delay)


def _cause(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def database_fatal(dsn: str) -> Classify:
    """Explain the database errors that no amount of waiting fixes."""
    url = URL(dsn)
    user, name = url.user or "postgres", url.path.lstrip("/") or url.user or "postgres"

    def fatal(exc: BaseException) -> str | None:
        if isinstance(
            exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
        ):
            return (
                f"PostgreSQL refused the login of user {user!r} ({exc}): check the user and"
                " password in DATABASE_URL"
            )
        if isinstance(exc, asyncpg.InvalidCatalogNameError):
            return (
                f"database {name!r} does not exist: create it (`createdb {name}`), then run"
                " `python -m db migrate`"
            )
        return None

    return fatal


async def check_schema(conn: asyncpg.Connection | asyncpg.Pool, needed: int) -> None:
    """Raise StartupError unless the database has reached migration `needed`."""
    try:
        have = await conn.fetchval("SELECT max(version) FROM schema_migrations")
    except asyncpg.UndefinedTableError:
        have = None
    if have is None or have < needed:
        state = "has no schema" if have is None else f"is at schema version {have}"
        raise StartupError(
            f"the database {state}, this code needs version {needed}: run `python -m db migrate`"
        )


def broker_fatal(url: str) -> Classify:
    """Explain the RabbitMQ errors that no amount of waiting fixes."""
    parsed = URL(url)
    user = parsed.user or "guest"
    vhost = parsed.path[1:] if len(parsed.path) > 1 else "/"

    def fatal(exc: BaseException) -> str | None:
        if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
            return (
                f"RabbitMQ refused the login of user {user!r}: check the user and password in"
                " AMQP_URL"
            )
        if isinstance(exc, aiormq.exceptions.InvalidFrameError) and "Connection.Close" in str(exc):
            return (
                f"RabbitMQ closed the connection while opening it: virtual host {vhost!r} of"
                f" AMQP_URL does not exist or user {user!r} may not use it (rabbitmqctl"
                f" add_vhost {vhost}; rabbitmqctl set_permissions -p {vhost} {user} '.*' '.*' '.*')"
            )
        return None

    return fatal
