"""`python -m worker`: run the worker; `python -m worker replay-dead-letters [N]` replays."""

from __future__ import annotations

import asyncio
import sys

from broker.replay import replay_dead_letters
from broker.topology import Names, connect, declare
from core import lifecycle, logs
from core.settings import WorkerSettings, load_or_exit
from db.pool import create_pool
from worker.consumer import Worker
from worker.smtp import SmtpPool


def main(argv: list[str]) -> int:
    settings = load_or_exit(WorkerSettings)
    logs.configure("worker", settings.log_level, settings.log_format)
    names = Names.from_prefix(settings.amqp_prefix)

    if argv[:1] == ["replay-dead-letters"]:
        limit = int(argv[1]) if len(argv) > 1 else None
        report = asyncio.run(replay_dead_letters(settings.amqp_url, names, limit))
        print(f"replayed {report.replayed} dead-lettered messages, {report.remaining} remain")
        return 0
    if argv:
        print(
            f"unknown command {argv[0]!r}; usage: python -m worker [replay-dead-letters [N]]",
            file=sys.stderr,
        )
        return 2

    async def run(stop: asyncio.Event) -> None:
        pool = await create_pool(settings.database_url, max_size=settings.db_pool_size)
        connection = await connect(settings.amqp_url, name="email-scheduler-worker")
        smtp = SmtpPool(settings, size=settings.worker_concurrency)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=settings.prefetch)
            topology = await declare(channel, names)
            await Worker(pool, smtp, settings).run(topology.queue, stop)
        finally:
            await smtp.close()
            await connection.close()
            await pool.close()

    return lifecycle.run(run, shutdown_timeout=settings.shutdown_timeout_seconds)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
