"""Liveness of a daemon: its loop records each turn it completes (`Heartbeat.beat`), a side
task writes the time of the last one to a file per process, and `check` (behind
`python -m ops health --service <daemon>`, which compose's health checks run) reads those
files. Once the daemon has its database pool, it attaches the heartbeat to its roster
(`db/replicas.py`, the `daemon_replicas` table that `ops status` lists for every host), and
the same side task reports there too.

A daemon whose loop stops turning (a statement that never returns, a lock that is never
granted) keeps writing the same old time, so the check fails even though the process is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Protocol

import asyncpg
import structlog

from runtime.settings import HealthSettings

log = structlog.get_logger()


# What reporting may meet while the database is away or the pool closing; the report is
# skipped and the daemon goes on. A heartbeat never stops the daemon it reports on.
_DB_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    TimeoutError,
)


@functools.cache
def version() -> str:
    """This installation's version (pyproject's), as replicas report it."""
    try:
        return metadata.version("email-scheduler")
    except metadata.PackageNotFoundError:  # run from a checkout
        pass
    try:
        with (Path(__file__).resolve().parents[1] / "pyproject.toml").open("rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


class Roster(Protocol):
    """Where a replica reports its progress beyond this host (db/replicas.py `Roster`)."""

    async def report(self, last_progress: datetime) -> None: ...

    async def leave(self) -> None: ...


def _file(directory: Path, service: str, pid: int) -> Path:
    return directory / f"{service}.{pid}.json"


class Heartbeat:
    """One process's record of progress."""

    def __init__(
        self,
        service: str,
        settings: HealthSettings,
        interval: float = 2.0,
        report_every: float = 5.0,
    ) -> None:
        self.service = service
        self.max_age = settings.health_max_age_seconds
        self.path = _file(settings.health_dir, service, os.getpid())
        self.interval = interval
        self.report_every = report_every
        self.last_progress = time.time()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.version = version()
        self.started_at = datetime.now(UTC)
        self._roster: Roster | None = None
        self._reported = 0.0

    def attach(self, roster: Roster) -> None:
        """Report to `roster` from now on."""
        self._roster = roster

    def beat(self) -> None:
        """The loop completed a turn."""
        self.last_progress = time.time()

    def write(self) -> None:
        """Record the last progress (atomically: a reader never sees half a file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "service": self.service,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "last_progress": self.last_progress,
                }
            )
        )
        tmp.replace(self.path)

    async def report(self) -> None:
        """Record this replica's progress in the database (when attached to one)."""
        if self._roster is None:
            return
        await self._roster.report(datetime.fromtimestamp(self.last_progress, UTC))

    async def detach(self) -> None:
        """The daemon is stopping (its pool about to close): no longer listed."""
        roster, self._roster = self._roster, None
        if roster is None:
            return
        with contextlib.suppress(*_DB_ERRORS):
            await roster.leave()

    async def run(self, stop: asyncio.Event) -> None:
        """Write the heartbeat every `interval` (and report it every `report_every`) until
        `stop`; remove it on the way out."""
        try:
            while not stop.is_set():
                try:
                    self.write()
                except OSError as exc:
                    log.warning("heartbeat_not_written", error=str(exc), path=str(self.path))
                if time.monotonic() - self._reported >= self.report_every:
                    try:
                        await self.report()
                        self._reported = time.monotonic()
                    except _DB_ERRORS as exc:
                        log.warning("heartbeat_not_reported", error=str(exc) or type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
        finally:
            with contextlib.suppress(OSError):
                self.path.unlink()
            await self.detach()


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: bool
    message: str


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check(service: str, settings: HealthSettings, now: float | None = None) -> Verdict:
    """Healthy when this host runs at least one replica of `service` and every one of them
    made progress within the allowed age."""
    now = time.time() if now is None else now
    replicas: list[tuple[int, float]] = []
    for path in sorted(settings.health_dir.glob(f"{service}.*.json")):
        try:
            data = json.loads(path.read_text())
            pid, last = int(data["pid"]), float(data["last_progress"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid):
            replicas.append((pid, now - last))
    if not replicas:
        return Verdict(False, f"no live {service} on this host ({settings.health_dir})")
    stuck = [(pid, age) for pid, age in replicas if age > settings.health_max_age_seconds]
    if stuck:
        pid, age = stuck[0]
        return Verdict(
            False,
            f"{service} pid {pid} made no progress for {age:.0f} s"
            f" (limit {settings.health_max_age_seconds:.0f} s)",
        )
    ages = ", ".join(f"pid {pid} {age:.1f} s ago" for pid, age in replicas)
    return Verdict(True, f"{service} made progress: {ages}")


def main(service: str) -> int:
    """`python -m <daemon> --health`: print the verdict; exit 0 healthy, 1 not."""
    verdict = check(service, HealthSettings())
    print(("healthy: " if verdict.healthy else "unhealthy: ") + verdict.message)
    return 0 if verdict.healthy else 1
