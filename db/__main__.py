"""Database commands.

`python -m db migrate` applies migrations; `python -m db seed-demo` loads the demo data;
`python -m db unsubscribe TOKEN` applies a one-click unsubscribe token (UNSUBSCRIBE_SECRET).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import asyncpg

from core.unsubscribe import MIN_SECRET_BYTES, InvalidToken, check_secret
from db import stops
from db.migrate import migrate
from runtime import logs
from runtime.health import version
from runtime.settings import CommonSettings, UnsubscribeSettings, load_or_exit

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


async def _unsubscribe(dsn: str, secret: str, token: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        done = await stops.apply_unsubscribe_token(conn, secret, token)
    except InvalidToken as exc:
        print(f"unsubscribe: {exc}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
    print(f"unsubscribed {done.email} (lead {done.lead_id}): {done.stopped} lead(s) stopped")
    return 0


def _arguments(argv: list[str]) -> list[str]:
    """The command and its argument; `--help` and `--version` answer without connecting."""
    ap = argparse.ArgumentParser(prog="python -m db", description=__doc__)
    ap.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("migrate", help="apply the migrations (idempotent, safe concurrently)")
    sub.add_parser("seed-demo", help="load the demo data into an empty database")
    unsub = sub.add_parser("unsubscribe", help="apply a one-click unsubscribe token")
    unsub.add_argument("token")
    args = ap.parse_args(argv)
    return [args.command, *([args.token] if args.command == "unsubscribe" else [])]


def main(argv: list[str]) -> int:
    argv = _arguments(argv)
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
        case ["unsubscribe", token]:
            secret = load_or_exit(UnsubscribeSettings).unsubscribe_secret.get_secret_value()
            try:
                check_secret(secret)
            except ValueError:
                print(
                    f"invalid settings: UNSUBSCRIBE_SECRET must be at least {MIN_SECRET_BYTES}"
                    " bytes (the secret the scheduler signs tokens with)",
                    file=sys.stderr,
                )
                return 2
            return asyncio.run(_unsubscribe(settings.database_url, secret, token))
    print("usage: python -m db migrate | seed-demo | unsubscribe TOKEN", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
