"""Schema changes: numbered, forward-only migrations, then the SQL function files.

Both run under one advisory lock, so two processes migrating at once serialise. Tables and
data change only through numbered files (`migrations/0001_name.sql`, one transaction each,
recorded in `schema_migrations`). Functions are code: each file of `db/functions/` holds
`CREATE OR REPLACE` definitions and is re-applied whenever its text changes (recorded with
its checksum in `schema_functions`), so a rule lives in one file instead of being copied
into every migration that changes it. A function whose signature changes gets a new name,
so replicas still running the old code keep calling the old one during a deploy.

A migration that would hold a large table locked for long can have a step that runs
first, outside its transaction and without blocking writers (`_ONLINE_FIRST`): it builds
what the migration then only uses.

A migration whose trigger needs a function of those files names the file in a line
`-- functions: counts.sql`; it is then applied first, in the migration's transaction (its
bodies checked later), and again with the others once the migrations are done.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import structlog

from db.partitions import prepare_events

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
FUNCTIONS_DIR = Path(__file__).resolve().parent / "functions"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_NEEDS = re.compile(r"(?m)^-- functions: ([a-z0-9_]+\.sql)$")
# Any fixed 64-bit key; two processes migrating at once serialise on it.
_LOCK_KEY = 0x656D61696C5F7363  # "email_sc"

log = structlog.get_logger()

# Steps run before a migration, outside its transaction (by the migration's name).
_ONLINE_FIRST: dict[str, Callable[[asyncpg.Connection, datetime], Awaitable[bool]]] = {
    "events_by_month": prepare_events,
}


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Return the migrations in `directory`, ordered; reject misnamed or duplicate files."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _FILE.match(path.name)
        if m is None:
            raise ValueError(f"migration file name must look like 0001_name.sql: {path.name}")
        version = int(m.group(1))
        if version in found:
            raise ValueError(f"two migrations share version {version:04d}")
        found[version] = Migration(version, m.group(2), path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def latest_version(directory: Path = MIGRATIONS_DIR) -> int:
    """The version a database must have reached for this code to run against it."""
    return max(m.version for m in discover(directory))


async def migrate(
    dsn: str,
    directory: Path = MIGRATIONS_DIR,
    functions: Path = FUNCTIONS_DIR,
    *,
    online: bool = True,
) -> list[int]:
    """Apply pending migrations, then changed function files; return the versions applied.
    `online=False` skips the steps that prepare a migration without blocking writers (the
    bench compares both)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    integer PRIMARY KEY,
                       name       text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now());
                   CREATE TABLE IF NOT EXISTS schema_functions (
                       name       text PRIMARY KEY,
                       checksum   text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            applied = {
                r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")
            }
            done: list[int] = []
            early: set[str] = set()
            for mig in discover(directory):
                if mig.version in applied:
                    continue
                first = _ONLINE_FIRST.get(mig.name) if online else None
                if first is not None and await first(conn, datetime.now(UTC)):
                    log.info("migration_prepared", version=mig.version, name=mig.name)
                async with conn.transaction():
                    for needed in _NEEDS.findall(mig.sql):
                        # Tables the file refers to may come in later migrations: its
                        # bodies are checked when it is applied again below.
                        await conn.execute("SET LOCAL check_function_bodies = off")
                        await conn.execute((functions / needed).read_text(encoding="utf-8"))
                        await conn.execute("SET LOCAL check_function_bodies = on")
                        early.add(needed)
                    await conn.execute(mig.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        mig.version,
                        mig.name,
                    )
                log.info("migration_applied", version=mig.version, name=mig.name)
                done.append(mig.version)
            await _apply_functions(conn, functions, again=early)
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()


def function_files(directory: Path = FUNCTIONS_DIR) -> list[tuple[str, str]]:
    """(file name, SQL) of each function file, in name order."""
    return [(p.name, p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.sql"))]


async def _apply_functions(
    conn: asyncpg.Connection, directory: Path, again: Collection[str] = ()
) -> None:
    known = {r["name"]: r["checksum"] for r in await conn.fetch("SELECT * FROM schema_functions")}
    for name, sql in function_files(directory):
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        if known.get(name) == checksum and name not in again:
            continue
        async with conn.transaction():
            await conn.execute(sql)
            await conn.execute(
                """INSERT INTO schema_functions (name, checksum) VALUES ($1, $2)
                   ON CONFLICT (name) DO UPDATE SET checksum = $2, applied_at = now()""",
                name,
                checksum,
            )
        log.info("functions_applied", file=name)
