"""`python -m inbox`: the inbox daemon (`--health`: is this host's one alive?)."""

from __future__ import annotations

import asyncio
import sys

from db import replicas
from db.migrate import latest_version
from db.pool import create_pool
from inbox.loop import Inbox
from runtime import daemon
from runtime.daemon import Main
from runtime.health import Heartbeat
from runtime.settings import InboxSettings
from runtime.startup import check_schema


def build(settings: InboxSettings, heartbeat: Heartbeat) -> Main:
    async def run(stop: asyncio.Event) -> None:
        pool = await create_pool(settings.database_url, max_size=settings.db_pool_size, stop=stop)
        try:
            await check_schema(pool, latest_version())
            heartbeat.attach(replicas.Roster(pool, heartbeat))
            await Inbox(pool, settings, heartbeat).run(stop)
        finally:
            await heartbeat.detach()
            await pool.close()

    return run


if __name__ == "__main__":
    raise SystemExit(daemon.main("inbox", InboxSettings, build, sys.argv[1:]))
