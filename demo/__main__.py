"""`make demo` (`python -m demo`): the whole product on this machine, without Docker.

PostgreSQL and RabbitMQ on localhost (started when they are installed but stopped), the demo
database `email_scheduler_demo` migrated and loaded with the demo data, the four daemons, the
API with the web console (signed in through a development OpenID provider, as compose does),
and MailDev, an SMTP catcher with a web inbox where the mail the demo sends can be read.
It says where to look; Ctrl-C stops all of it.

Ports and names are settings (`DEMO_*`, below) so that a demo can run beside another one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from db.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PROVIDER = ROOT / "tests/browser/provider.mjs"  # the development OpenID provider compose runs


@dataclass(frozen=True)
class Demo:
    pg_url: str  # the server; the demo's database is created on it
    amqp_url: str
    database: str
    api_port: int
    oidc_port: int
    smtp_port: int
    mail_port: int
    state: Path  # logs and heartbeats

    @classmethod
    def from_env(cls) -> Demo:
        e = os.environ.get
        return cls(
            pg_url=e("DEMO_PG_URL", "postgresql://postgres@127.0.0.1:5432"),
            amqp_url=e("DEMO_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            database=e("DEMO_DATABASE", "email_scheduler_demo"),
            api_port=int(e("DEMO_API_PORT", "8080")),
            oidc_port=int(e("DEMO_OIDC_PORT", "9000")),
            smtp_port=int(e("DEMO_SMTP_PORT", "1025")),
            mail_port=int(e("DEMO_MAIL_PORT", "1080")),
            state=Path(e("DEMO_STATE_DIR", str(ROOT / ".demo"))),
        )

    @property
    def database_url(self) -> str:
        return f"{self.pg_url.rstrip('/')}/{self.database}"

    def env(self) -> dict[str, str]:
        """What every process of the demo is given (the demo's own, not production, secrets)."""
        api = f"http://localhost:{self.api_port}"
        return {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - npm's cache
            "DATABASE_URL": self.database_url,
            "AMQP_URL": self.amqp_url,
            "AMQP_PREFIX": self.database,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp_port),
            "SMTP_TLS": "none",
            "SMTP_LOCAL_HOSTNAME": "demo.acme.test",
            "LOG_FORMAT": "json",
            "SUMMARY_INTERVAL_SECONDS": "15",
            "HEALTH_DIR": str(self.state / "health"),
            "UNSUBSCRIBE_MAILTO": "unsubscribe@acme.test",
            "UNSUBSCRIBE_URL": f"{api}/u",
            "UNSUBSCRIBE_SECRET": "demo-unsubscribe-secret-0123456789abcdef",
            "MESSAGE_ID_SECRET": "demo-message-id-secret-0123456789abcdef",
            "API_HOST": "127.0.0.1",
            "API_PORT": str(self.api_port),
            "OIDC_ISSUER": f"http://localhost:{self.oidc_port}",
            "OIDC_CLIENT_ID": "demo-console",
            "OIDC_CLIENT_SECRET": "demo-console-secret",
            "CONSOLE_ALLOWED": "@acme.test",
            "SESSION_SECRET": "demo-session-secret-0123456789abcdefghij",
            "SESSION_COOKIE_SECURE": "false",
        }


def _say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def _reachable(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_services() -> None:
    """PostgreSQL and RabbitMQ on localhost: used when they run, started when they are
    installed here and stopped (as root), else the demo says what is missing."""
    if not _reachable(["pg_isready", "-h", "127.0.0.1", "-q"]):
        clusters = Path("/etc/postgresql")
        if shutil.which("pg_ctlcluster") and clusters.is_dir() and any(clusters.iterdir()):
            version = sorted(p.name for p in clusters.iterdir())[-1]
            _say(f"starting PostgreSQL {version}")
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                check=False,
            )
    mq_up = _reachable(["rabbitmq-diagnostics", "-q", "check_port_connectivity"])
    if not mq_up and shutil.which("rabbitmq-server"):
        _say("starting RabbitMQ")
        subprocess.run(["rabbitmq-server", "-detached"], check=False)
    for _ in range(60):
        pg = _reachable(["pg_isready", "-h", "127.0.0.1", "-q"])
        mq = _reachable(["rabbitmq-diagnostics", "-q", "check_port_connectivity"])
        if pg and mq:
            return
        time.sleep(1)
    raise SystemExit(
        "demo: PostgreSQL and RabbitMQ must run on localhost (or install them: "
        "apt-get install postgresql rabbitmq-server; `make demo` does as root)"
    )


async def prepare(demo: Demo) -> None:
    """The demo database, migrated, with the demo data (loaded once)."""
    admin = await asyncpg.connect(f"{demo.pg_url.rstrip('/')}/postgres")
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", demo.database)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{demo.database}"')
    finally:
        await admin.close()
    await migrate(demo.database_url)
    conn = await asyncpg.connect(demo.database_url)
    try:
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM sequences)"):
            await conn.execute((ROOT / "db/demo.sql").read_text(encoding="utf-8"))
            _say("demo data loaded: 2 senders, a 3-step sequence, 5 leads")
    finally:
        await conn.close()


class Fleet:
    """The demo's processes, each with its log file; stopped together."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.logs = demo.state / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        (demo.state / "health").mkdir(parents=True, exist_ok=True)
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
        with (self.logs / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((name, proc))

    def dead(self) -> list[str]:
        return [name for name, p in self.procs if p.poll() is not None]

    def stop(self) -> None:
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 25
        for _, p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own demo
            return bool(resp.status < 500)
    except OSError:
        return False


def _wait_up(url: str, fleet: Fleet, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not _up(url):
        if fleet.dead():
            raise SystemExit(f"demo: {', '.join(fleet.dead())} stopped; see {fleet.logs}")
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {url} did not answer within {seconds:g} s; see {fleet.logs}")
        time.sleep(0.3)


def run(demo: Demo) -> int:
    ensure_services()
    asyncio.run(prepare(demo))
    fleet = Fleet(demo)
    env = demo.env()
    maildev = HERE / "node_modules/.bin/maildev"
    if not maildev.exists():
        raise SystemExit(
            "demo: MailDev is not installed: run `make demo` (it runs npm ci in demo/)"
        )
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        fleet.start("maildev", [str(maildev), "--smtp", str(demo.smtp_port), "--web",
                                str(demo.mail_port), "--ip", "127.0.0.1",
                                "--web-ip", "127.0.0.1"], env, cwd=HERE)  # fmt: skip
        callback = f"http://localhost:{demo.api_port}/auth/callback"
        provider_env = {
            **env, "PORT": str(demo.oidc_port), "HOST": "127.0.0.1",
            "ISSUER": env["OIDC_ISSUER"], "CLIENT_ID": env["OIDC_CLIENT_ID"],
            "CLIENT_SECRET": env["OIDC_CLIENT_SECRET"], "REDIRECT_URI": callback,
        }  # fmt: skip
        fleet.start("oidc", ["node", str(PROVIDER)], provider_env, cwd=PROVIDER.parent)
        _wait_up(f"http://127.0.0.1:{demo.mail_port}/api/healthz", fleet)
        _wait_up(f"http://127.0.0.1:{demo.oidc_port}/.well-known/openid-configuration", fleet)
        for module in ("scheduler", "pump", "worker", "inbox", "webhooks", "api"):
            fleet.start(module, [sys.executable, "-m", module], env)
        _wait_up(f"http://127.0.0.1:{demo.api_port}/healthz", fleet)
        print(
            json.dumps(
                {
                    "mail": f"http://localhost:{demo.mail_port}",
                    "console": f"http://localhost:{demo.api_port}",
                    "api_docs": f"http://localhost:{demo.api_port}/docs",
                    "logs": str(fleet.logs),
                }
            ),
            flush=True,
        )
        _say(
            f"running. Read the mail it sends at http://localhost:{demo.mail_port}; the console"
            f" is http://localhost:{demo.api_port} (sign in as anyone@acme.test, any password);"
            f" the API's docs at http://localhost:{demo.api_port}/docs; logs in {fleet.logs}."
            " Ctrl-C stops everything."
        )
        while not stopping:
            if dead := fleet.dead():
                _say(f"{', '.join(dead)} stopped unexpectedly; see {fleet.logs}")
                return 1
            time.sleep(0.5)
        _say("stopping")
        return 0
    finally:
        fleet.stop()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m demo",
        description="Run the whole product on this machine without Docker: demo data, the"
        " daemons, the console and a web inbox for the mail it sends (DEMO_* settings: see"
        " demo/__main__.py). Ctrl-C stops it.",
    )
    ap.parse_args(argv)
    return run(Demo.from_env())


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
