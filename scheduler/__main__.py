"""`python -m scheduler`: run the scheduler daemon (`--health`: is this host's one alive?)."""

from __future__ import annotations

import asyncio
import sys

from db import replicas
from db.migrate import latest_version
from db.pool import create_pool
from runtime import daemon
from runtime.daemon import Main
from runtime.health import Heartbeat
from runtime.settings import SchedulerSettings
from runtime.startup import check_schema
from scheduler import planning
from scheduler.loop import Scheduler


def build(settings: SchedulerSettings, heartbeat: Heartbeat) -> Main:
    async def run(stop: asyncio.Event) -> None:
        pool = await create_pool(settings.database_url, max_size=settings.db_pool_size, stop=stop)
        try:
            await check_schema(pool, latest_version())
            heartbeat.attach(replicas.Roster(pool, heartbeat))
            await planning.start()
            await Scheduler(pool, settings, heartbeat=heartbeat).run(stop)
        finally:
            planning.shutdown()
            await heartbeat.detach()
            await pool.close()

    return run


if __name__ == "__main__":
    raise SystemExit(daemon.main("scheduler", SchedulerSettings, build, sys.argv[1:]))
