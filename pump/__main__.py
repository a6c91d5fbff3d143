"""`python -m pump`: run the outbox pump."""

from __future__ import annotations

import asyncio

from broker.topology import Names, connect, declare
from core import lifecycle, logs
from core.settings import PumpSettings, load_or_exit
from db.pool import create_pool
from pump.loop import Pump


def main() -> int:
    settings = load_or_exit(PumpSettings)
    logs.configure("pump", settings.log_level, settings.log_format)

    async def run(stop: asyncio.Event) -> None:
        pool = await create_pool(settings.database_url, max_size=settings.db_pool_size)
        connection = await connect(settings.amqp_url, name="email-scheduler-pump")
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
            await Pump(pool, exchanges, settings).run(stop)
        finally:
            await connection.close()
            await pool.close()

    return lifecycle.run(run, shutdown_timeout=settings.shutdown_timeout_seconds)


if __name__ == "__main__":
    raise SystemExit(main())
