"""Starting the daemons as real processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.conftest import AMQP_URL
from tests.processes import ROOT, spawn

__all__ = ["ROOT", "Daemons", "daemon_env"]


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
