"""Reaching PostgreSQL and RabbitMQ at start-up: wait while they come up, saying so every few
seconds; stop with one line naming the problem and its fix when waiting cannot help."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiormq.exceptions
import asyncpg
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter
from tenacity.stop import stop_base
from yarl import URL

log = structlog.get_logger()
T = TypeVar("T")

# How often a line says we are still waiting.
REPORT_EVERY_SECONDS = 5.0


class StartupError(Exception):
    """A fault that waiting will not cure; the message names it and the fix."""


Classify = Callable[[BaseException], str | None]


class until_set(stop_base):
    """A tenacity stop condition: stop retrying once `event` is set (the process stops)."""

    def __init__(self, event: asyncio.Event | None) -> None:
        self.event = event

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.event is not None and self.event.is_set()


async def wait_for(
    what: str,
    connect: Callable[[], Awaitable[T]],
    fatal: Classify,
    transient: tuple[type[BaseException], ...],
    *,
    stop: asyncio.Event | None = None,
    max_delay: float = 5.0,
) -> T:
    """`connect()`, retried with backoff (tenacity: exponential from 0.2 s to `max_delay`,
    with jitter) while it fails with a `transient` error.

    Logs `waiting_for_<what>` (attempt, cause) at most every few seconds while waiting;
    raises StartupError at once for an error `fatal` explains (or one not transient), and
    CancelledError once `stop` is set (a clean exit, not a failure).
    """
    loop = asyncio.get_running_loop()
    last_report = -REPORT_EVERY_SECONDS

    def report(state: RetryCallState) -> None:
        nonlocal last_report
        if loop.time() - last_report >= REPORT_EVERY_SECONDS and state.outcome is not None:
            last_report = loop.time()
            cause = state.outcome.exception()
            assert cause is not None
            log.warning(f"waiting_for_{what}", attempt=state.attempt_number, cause=_cause(cause))

    retrying = AsyncRetrying(
        retry=retry_if_exception(lambda e: isinstance(e, transient) and fatal(e) is None),
        wait=wait_exponential_jitter(multiplier=0.2, max=max_delay, jitter=0.1),
        stop=until_set(stop),
        before_sleep=report,
        reraise=True,
        sleep=asyncio.sleep if stop is None else functools.partial(_sleep_unless, stop),
    )
    try:
        return await retrying(connect)
    except Exception as exc:
        if stop is not None and stop.is_set():
            raise asyncio.CancelledError from None  # asked to stop while waiting
        reason = fatal(exc)
        if reason is not None:
            raise StartupError(reason) from exc
        raise StartupError(f"cannot reach {what}: {type(exc).__name__}: {exc}") from exc


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


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
    parsed = URL(url.split(",", maxsplit=1)[0].strip())
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
