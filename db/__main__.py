"""`python -m db migrate` applies migrations; `python -m db seed-demo` loads the demo data."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg

from core import logs
from core.settings import CommonSettings, load_or_exit
from db.migrate import migrate

DEMO_SQL = Path(__file__).with_name("demo.sql")


async def _seed(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM sequences)"):
            print("demo data: the database already has sequences, nothing loaded")
            return
        await conn.execute(DEMO_SQL.read_text(encoding="utf-8"))
        print("demo data loaded")
    finally:
        await conn.close()


def main(argv: list[str]) -> int:
    settings = load_or_exit(CommonSettings)
    logs.configure("db", settings.log_level, settings.log_format)
    match argv:
        case ["migrate"]:
            applied = asyncio.run(migrate(settings.database_url))
            print(f"applied {len(applied)} migration(s)" if applied else "schema is up to date")
            return 0
        case ["seed-demo"]:
            asyncio.run(_seed(settings.database_url))
            return 0
    print("usage: python -m db migrate | seed-demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
