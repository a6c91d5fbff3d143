"""Private PostgreSQL and RabbitMQ instances in temporary directories on free ports, so a
test can stop, restart and kill them without touching the machine's shared services."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as(user: str, argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run as `user` when we are root (initdb and postgres refuse root); else as ourselves."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload, no-any-return]


def _own(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


class PrivatePostgres:
    def __init__(self, options: str = "") -> None:
        """`options`: more server settings (`-c name=value ...`)."""
        self.dir = Path(tempfile.mkdtemp(prefix="es_fault_pg_"))
        _own(self.dir, "postgres")
        self.port = free_port()
        self.data = self.dir / "data"
        self.options = options

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def start(self) -> PrivatePostgres:
        if not self.data.exists():
            _as(
                "postgres",
                ["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"],
            )
        self._ctl("start")
        return self

    def _ctl(self, action: str) -> None:
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
            f" -c synchronous_commit=off -c max_connections=300 {self.options}"
        )
        _as(
            "postgres",
            [
                "pg_ctl",
                "-D",
                str(self.data),
                "-o",
                opts,
                "-l",
                str(self.dir / "log"),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                action,
            ],
        )

    def restart(self) -> None:
        self._ctl("restart")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("stop")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRabbit:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="es_fault_mq_"))
        _own(self.dir, "rabbitmq")
        self.port = free_port()
        self.node = f"esfault{uuid.uuid4().hex[:8]}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        d = self.dir
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "plugins"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(d / "feature_flags"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(d / "pid"),
        }

    def ctl(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.node, *args],
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    def start(self) -> PrivateRabbit:
        with (self.dir / "server.out").open("ab") as out:
            self.proc = subprocess.Popen(
                ["rabbitmq-server"], env=self._env(), stdout=out, stderr=subprocess.STDOUT
            )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"private RabbitMQ did not start: see {self.dir / 'server.out'}")

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def kill9(self) -> None:
        """SIGKILL the node's Erlang VM: no clean shutdown, as a crashed host leaves it."""
        out = subprocess.run(
            ["rabbitmqctl", "-q", "-n", self.node, "eval", "os:getpid()."],
            check=True, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        os.kill(int(out.stdout.strip().strip('"')), signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the port closes once the VM is gone
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    time.sleep(0.2)
            except OSError:
                return

    def start_app(self) -> None:
        self.ctl("start_app")
        self.wait_ready()

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.ctl("stop", timeout=30)
        if self.proc is not None:
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRabbitCluster:
    """Private RabbitMQ nodes joined in one cluster (three by default): a quorum queue keeps
    its majority, and so takes and gives messages, while one node at a time is stopped,
    killed or restarted. `url` lists every node, as AMQP_URL does for a cluster."""

    def __init__(self, size: int = 3) -> None:
        self.nodes = [PrivateRabbit() for _ in range(size)]

    @property
    def url(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def start(self) -> PrivateRabbitCluster:
        for n in self.nodes:
            n.start()
        first = self.nodes[0]
        for n in self.nodes[1:]:
            n.ctl("stop_app")
            n.ctl("join_cluster", first.node)
            n.ctl("start_app")
            n.wait_ready()
        return self

    def running(self) -> list[str]:
        """The nodes that the first node to answer counts as running in the cluster."""
        for n in self.nodes:
            try:
                out = subprocess.run(
                    ["rabbitmqctl", "-q", "-n", n.node, "cluster_status", "--formatter", "json"],
                    check=True, capture_output=True, text=True, timeout=30,
                )  # fmt: skip
            except (subprocess.SubprocessError, OSError):
                continue
            return sorted(json.loads(out.stdout)["running_nodes"])
        return []

    def kill9(self, i: int) -> None:
        """SIGKILL the node's Erlang VM (as a crashed host would leave it)."""
        self.nodes[i].kill9()

    def restart(self, i: int) -> None:
        """Start a stopped or killed node again; it rejoins the cluster from its own data."""
        self.nodes[i].start()

    def destroy(self) -> None:
        for n in self.nodes:
            n.destroy()
