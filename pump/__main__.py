"""`python -m pump`: run the outbox pump (`--health`: is this host's one alive?)."""

from __future__ import annotations

import asyncio
import sys

from broker.topology import Names, connect, declare
from db import replicas
from db.migrate import latest_version
from db.pool import create_pool
from pump.loop import Pump
from runtime import daemon
from runtime.daemon import Main
from runtime.health import Heartbeat
from runtime.settings import PumpSettings
from runtime.startup import check_schema


def build(settings: PumpSettings, heartbeat: Heartbeat) -> Main:
    async def run(stop: asyncio.Event) -> None:
        pool = await create_pool(settings.database_url, max_size=settings.db_pool_size, stop=stop)
        try:
            await check_schema(pool, latest_version())
            heartbeat.attach(replicas.Roster(pool, heartbeat))
            connection = await connect(settings.amqp_url, name="email-scheduler-pump", stop=stop)
            try:
                names = Names.from_prefix(settings.amqp_prefix)
                channels = [
                    await connection.channel(publisher_confirms=True, on_return_raises=True)
                    for _ in range(settings.pump_channels)
                ]
                topology = await declare(channels[0], names)
                exchanges = [topology.exchange]
                for ch in channels[1:]:
                    exchanges.append(await ch.get_exchange(names.exchange, ensure=False))
                await Pump(pool, exchanges, settings, heartbeat=heartbeat).run(stop)
            finally:
                await connection.close()
        finally:
            await heartbeat.detach()
            await pool.close()

    return run


if __name__ == "__main__":
    raise SystemExit(daemon.main("pump", PumpSettings, build, sys.argv[1:]))
