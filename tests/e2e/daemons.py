"""Starting the daemons as real processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import asyncpg

from core.clock import utcnow
from ops import senders
from runtime.credentials import Box
from tests.conftest import AMQP_URL, MESSAGE_ID_SECRET
from tests.processes import ROOT, spawn

__all__ = ["CREDENTIALS_KEY", "ROOT", "Daemons", "daemon_env", "lead_is", "start_with_inbox"]


def daemon_env(database: str, amqp_prefix: str, smtp_port: int, **extra: str) -> dict[str, str]:
    """The settings every e2e run gives its daemons (fast polls), plus `extra`."""
    return {
        "DATABASE_URL": database,
        "AMQP_URL": AMQP_URL,
        "AMQP_PREFIX": amqp_prefix,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "SCHEDULER_POLL_SECONDS": "1",
        "PUMP_POLL_SECONDS": "1",
        "MESSAGE_ID_SECRET": MESSAGE_ID_SECRET,
        **extra,
    }


class Daemons:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = {"PATH": os.environ["PATH"], "LOG_FORMAT": "json", **env}
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, module: str, replica: int = 0, **extra: str) -> subprocess.Popen[bytes]:
        proc = spawn(module, {**self.env, **extra}, self.log_dir / f"{module}-{replica}.log")
        self.procs.append((module, proc))
        return proc

    def stop_all(self, timeout: float = 30) -> dict[str, int]:
        """SIGTERM everything and return each process's exit status."""
        for _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = {}
        for i, (name, p) in enumerate(self.procs):
            try:
                codes[f"{name}#{i}"] = p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[f"{name}#{i}"] = -9
        return codes

    def logs(self) -> str:
        return "\n".join(f.read_text() for f in sorted(self.log_dir.glob("*.log")))


CREDENTIALS_KEY = "credentials-key-of-the-e2e-tests-0123456789"


async def start_with_inbox(  # noqa: PLR0917
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp_port: int,
    imap: tuple[int, str, str], log_dir: Path,
) -> Daemons:  # fmt: skip
    """The four daemons as processes, sending through `smtp_port`, with sales@acme.test's
    inbox on the IMAP server `imap` (port, user, password)."""
    port, user, password = imap
    async with pool.acquire() as conn:
        await senders.set_accounts(
            conn, "sales@acme.test",
            imap_url=f"imap://{user.replace('@', '%40')}@127.0.0.1:{port}",
            imap_password=password, box=Box(CREDENTIALS_KEY), actor="test", now=utcnow(),
        )  # fmt: skip
    env = daemon_env(database, amqp_prefix, smtp_port, CREDENTIALS_KEY=CREDENTIALS_KEY,
                     INBOX_REFRESH_SECONDS="1", HEALTH_DIR=str(log_dir / "health"))  # fmt: skip
    daemons = Daemons(env, log_dir)
    for module in ("scheduler", "pump", "worker", "inbox"):
        daemons.start(module)
    return daemons


async def lead_is(pool: asyncpg.Pool, email: str, status: str) -> bool:
    return bool(
        await pool.fetchval("SELECT status = $2 FROM leads WHERE email = $1", email, status)
    )
