"""The asyncpg pool and the dedicated LISTEN connection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

if TYPE_CHECKING:
    from asyncpg.pool import _SetupCallback  # the stubs' type of a pool's `setup`

from runtime.startup import database_fatal, until_set, wait_for

log = structlog.get_logger()

# A connection, whether held directly or borrowed from the pool.
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"

# Errors that mean "the database is not reachable right now" rather than "the query is wrong".
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # Raised by the pool when it resets a connection the server just dropped mid-reply
    # (seen across a PostgreSQL restart); the next acquire gets a fresh connection.
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    ConnectionError,
    TimeoutError,
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
    )
    await conn.set_type_codec(
        "json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
    )


# Times cross the wire in UTC, and "1 day" in SQL is always 24 hours.
_SESSION = {"TimeZone": "UTC"}


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection set up as the pool's are (JSON codecs, UTC), for tools that need no
    pool."""
    conn = await asyncpg.connect(dsn, server_settings=_SESSION)
    await _init_connection(conn)
    return conn


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection without the default reset query (one round trip per release).

    The daemons leave no session state behind: no SET, LISTEN, advisory lock or open
    cursor on a pooled connection (LISTEN has its own connection, see `Listener`). asyncpg
    still rolls back a transaction left open before it calls this.
    """


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    stop: asyncio.Event | None = None,
    setup: _SetupCallback[asyncpg.Record] | None = None,
) -> asyncpg.Pool:
    """Open a pool, waiting (and saying so) while the database is starting or unreachable;
    runtime.startup.StartupError when waiting cannot help (wrong password, no database)."""

    async def open_pool() -> asyncpg.Pool:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            setup=setup,
            reset=_keep_session,
            server_settings=_SESSION,
            command_timeout=60,
            max_inactive_connection_lifetime=300,
        )
        assert pool is not None
        return pool

    return await wait_for(
        "database", open_pool, database_fatal(dsn), TRANSIENT_DB_ERRORS, stop=stop
    )


class Listener:
    """Holds one connection that LISTENs on channels and sets an event on each notification.

    asyncpg's pool runs `UNLISTEN *` on release, so LISTEN needs a connection of its own.
    A dropped connection is reopened by `run`; missed notifications are covered by the
    callers' poll timers.
    """

    def __init__(self, dsn: str, channels: Iterable[str]) -> None:
        self._dsn = dsn
        self._channels = tuple(channels)
        self.event = asyncio.Event()

    def _notify(self, *_args: Any) -> None:
        self.event.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a listening connection open until `stop` is set: reopened (with backoff)
        whenever it is lost."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT_DB_ERRORS),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.1),
            stop=until_set(stop),
            before_sleep=lambda state: log.warning(
                "listener_reconnecting",
                error=str(state.outcome.exception() if state.outcome else ""),
                retry_in_s=round(state.upcoming_sleep, 2),
            ),
            reraise=True,
            sleep=lambda seconds: _first(stop.wait(), asyncio.sleep(seconds)),
        )
        while not stop.is_set():
            conn: asyncpg.Connection
            lost: asyncio.Event
            try:
                conn, lost = await retrying(self._listen)
            except TRANSIENT_DB_ERRORS:
                return  # asked to stop while reconnecting
            try:
                await _first(stop.wait(), lost.wait())
            finally:
                if not conn.is_closed():
                    conn.terminate()

    async def _listen(self) -> tuple[asyncpg.Connection, asyncio.Event]:
        """A connection listening on the channels, and the event set when it is lost."""
        conn = await asyncpg.connect(self._dsn, timeout=10)
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c: lost.set())
            for channel in self._channels:
                await conn.add_listener(channel, self._notify)
        except BaseException:
            conn.terminate()
            raise
        self.event.set()  # anything may have happened while we were away
        return conn, lost


async def _first(*aws: Any) -> None:
    """Wait until the first of several awaitables finishes; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
