"""`python -m api`: the HTTP service on API_HOST:API_PORT (default 0.0.0.0:8080);
`--health`: is this host's one alive?"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator

import uvicorn

from api.app import create_app
from runtime import daemon
from runtime.daemon import Main
from runtime.health import Heartbeat
from runtime.settings import ApiSettings


class _Server(uvicorn.Server):
    """uvicorn's server, with signals left to runtime.daemon (soft stop, then hard, exit 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build(settings: ApiSettings, heartbeat: Heartbeat) -> Main:
    config = uvicorn.Config(
        create_app(settings, heartbeat),
        host=settings.api_host,
        port=settings.api_port,
        loop="none",  # runtime.daemon's (uvloop)
        http="httptools",
        log_config=None,  # our JSON logger
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_timeout_seconds) - 1),
    )

    async def run(stop: asyncio.Event) -> None:
        server = _Server(config)
        serving = asyncio.create_task(server.serve())
        await asyncio.wait(
            [serving, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED"
        )
        server.should_exit = True
        await serving
        if not server.started:
            raise SystemExit(1)

    return run


if __name__ == "__main__":
    raise SystemExit(daemon.main("api", ApiSettings, build, sys.argv[1:]))
