"""`python -m scheduler`: run the scheduler daemon."""

from __future__ import annotations

import asyncio

from core import lifecycle, logs
from core.settings import SchedulerSettings, load_or_exit
from db.pool import create_pool
from scheduler.loop import Scheduler


def main() -> int:
    settings = load_or_exit(SchedulerSettings)
    logs.configure("scheduler", settings.log_level, settings.log_format)

    async def run(stop: asyncio.Event) -> None:
        pool = await create_pool(settings.database_url, max_size=settings.db_pool_size)
        try:
            await Scheduler(pool, settings).run(stop)
        finally:
            await pool.close()

    return lifecycle.run(run, shutdown_timeout=settings.shutdown_timeout_seconds)


if __name__ == "__main__":
    raise SystemExit(main())
