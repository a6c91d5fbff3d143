"""`python -m worker`: run the worker (`--health`: is this host's one alive?);
`python -m worker replay-dead-letters [N]` replays dead letters."""

from __future__ import annotations

import asyncio
import socket
import sys

import structlog

from broker.dead_letters import replay
from broker.topology import Names, connect, declare
from db import replicas
from db.migrate import latest_version
from db.pool import create_pool
from runtime import daemon
from runtime.daemon import Main
from runtime.health import Heartbeat
from runtime.settings import WorkerSettings
from runtime.startup import check_schema
from worker.consumer import Worker
from worker.relays import Relays
from worker.signing import Signer

log = structlog.get_logger()


def ehlo_name(settings: WorkerSettings) -> str:
    """The name the worker greets SMTP servers with; warned about unless fully qualified."""
    name = settings.smtp_local_hostname or socket.getfqdn()
    if "." not in name.strip(".") or name.endswith((".local", ".localdomain", ".internal")):
        log.warning(
            "smtp_local_hostname_not_qualified",
            ehlo=name,
            error="relays may refuse or score a greeting that is not a fully qualified name:"
            " set SMTP_LOCAL_HOSTNAME to this host's public name",
        )
    return name


def build(settings: WorkerSettings, heartbeat: Heartbeat) -> Main:
    names = Names.from_prefix(settings.amqp_prefix)
    local_hostname = ehlo_name(settings)

    async def run(stop: asyncio.Event) -> None:
        pool = await create_pool(settings.database_url, max_size=settings.db_pool_size, stop=stop)
        try:
            await check_schema(pool, latest_version())
            heartbeat.attach(replicas.Roster(pool, heartbeat))
            connection = await connect(settings.amqp_url, name="email-scheduler-worker", stop=stop)
            smtp = Relays(pool, settings, local_hostname=local_hostname)
            try:
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=settings.prefetch)
                topology = await declare(channel, names)
                signer = Signer(settings.dkim_keys_dir) if settings.dkim_keys_dir else None
                worker = Worker(pool, smtp, settings, heartbeat=heartbeat, signer=signer)
                try:
                    await worker.run(topology.queue, stop)
                finally:
                    if signer is not None:
                        signer.close()
            finally:
                await smtp.close()
                await connection.close()
        finally:
            await heartbeat.detach()
            await pool.close()

    return run


def main(argv: list[str]) -> int:
    if argv[:1] == ["replay-dead-letters"]:
        settings = daemon.start("worker", WorkerSettings)
        limit = int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else None
        names = Names.from_prefix(settings.amqp_prefix)
        moved = asyncio.run(replay(settings.amqp_url, names, None, limit))
        print(f"replayed {len(moved)} dead-lettered messages (python -m ops dead-letters)")
        return 0
    return daemon.main("worker", WorkerSettings, build, argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
