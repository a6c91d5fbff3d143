"""Fixtures: a database per test (cloned from a migrated template), broker names per test,
a real SMTP server per test."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from broker.topology import Names
from db.migrate import migrate
from tests.imap_server import Dovecot
from tests.smtp_server import SmtpServer

PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
# The scheduler's Message-ID key in every test that plans mail.
MESSAGE_ID_SECRET = "message-id-secret-of-the-tests-0123456789"


def db_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    name = f"es_tpl_{uuid.uuid4().hex[:12]}"

    async def make() -> None:
        await _admin(f'CREATE DATABASE "{name}"')
        await migrate(db_url(name))

    asyncio.run(make())
    yield name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def database(template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database; yields its URL."""
    name = f"es_t_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield db_url(name)
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    from db.pool import create_pool  # noqa: PLC0415

    p = await create_pool(database, max_size=10)
    yield p
    await p.close()


@pytest.fixture
async def amqp_prefix() -> AsyncIterator[str]:
    """Exchange and queue names of this test's own; deleted afterwards."""
    prefix = f"es_test_{uuid.uuid4().hex[:10]}"
    yield prefix
    names = Names.from_prefix(prefix)
    conn = await aio_pika.connect(AMQP_URL)
    try:
        ch = await conn.channel()
        for q in (names.queue, names.dead_queue):
            await ch.queue_delete(q)
        for x in (names.exchange, names.dead_exchange):
            await ch.exchange_delete(x)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One private Dovecot for the session; each test makes its own users. Its directory is
    one Dovecot's own users can reach (pytest's are private to the caller)."""
    directory = Path(tempfile.mkdtemp(prefix="es_dovecot_"))
    directory.chmod(0o755)
    server = Dovecot(directory).start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


async def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll `predicate` (sync or async) until it returns truthy; fail after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


# Columns a request may touch without changing anything: when a token or a session was last
# used.
_TOUCHED = {("api_tokens", "last_used_at"), ("console_sessions", "seen_at")}
# Written by every running daemon's heartbeat on its own clock, whatever a request did.
_LIVENESS = {"daemon_replicas"}


async def fingerprint(pool: asyncpg.Pool) -> dict[str, str]:
    """A digest of every table's rows (but the columns that only say when something was last
    used, and the daemons' heartbeats): equal before and after a request that changed
    nothing."""
    columns = await pool.fetch(
        """SELECT c.table_name, array_agg(quote_ident(c.column_name) ORDER BY c.ordinal_position)
             FROM information_schema.columns c
             JOIN information_schema.tables t USING (table_schema, table_name)
            WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
            GROUP BY c.table_name"""
    )
    out = {}
    for table, cols in columns:
        if table in _LIVENESS:
            continue
        kept = [c for c in cols if (table, c.strip('"')) not in _TOUCHED]
        out[table] = await pool.fetchval(
            f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) "
            f"FROM (SELECT {', '.join(kept)} FROM {table}) x"
        )
    return out
