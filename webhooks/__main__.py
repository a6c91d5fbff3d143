"""`python -m webhooks`: run the webhooks deliverer (`--health`: is this host's one alive?)."""

from __future__ import annotations

import asyncio
import sys

from db import replicas
from db.migrate import latest_version
from db.pool import create_pool
from runtime import daemon
from runtime.daemon import Main
from runtime.health import Heartbeat
from runtime.settings import WebhookSettings
from runtime.startup import check_schema
from webhooks.deliver import Deliverer


def build(settings: WebhookSettings, heartbeat: Heartbeat) -> Main:
    async def run(stop: asyncio.Event) -> None:
        pool = await create_pool(settings.database_url, max_size=settings.db_pool_size, stop=stop)
        try:
            await check_schema(pool, latest_version())
            heartbeat.attach(replicas.Roster(pool, heartbeat))
            deliverer = Deliverer(pool, settings, heartbeat=heartbeat)
            try:
                await deliverer.run(stop)
            finally:
                await deliverer.close()
        finally:
            await heartbeat.detach()
            await pool.close()

    return run


if __name__ == "__main__":
    raise SystemExit(daemon.main("webhooks", WebhookSettings, build, sys.argv[1:]))
