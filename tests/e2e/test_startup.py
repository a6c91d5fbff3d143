"""Starting a daemon against services that are not (yet) right: it says what it waits for
every few seconds, or ends with one JSON line naming the problem and the fix (exit 2); a
stalled loop makes the health check fail."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import AMQP_URL, _admin, db_url, wait_for
from tests.e2e.daemons import ROOT, Daemons, daemon_env

pytestmark = pytest.mark.e2e


def _run(
    module: str, env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _json_lines(text: str) -> list[dict[str, object]]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return [json.loads(ln) for ln in lines]  # every line is JSON, library lines too


def _failed_once(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr == ""
    lines = _json_lines(proc.stdout)
    failed = [ln for ln in lines if ln["event"] == "startup_failed"]
    assert len(failed) == 1, lines
    assert "Traceback" not in proc.stdout
    return str(failed[0]["error"])


def test_an_unmigrated_database_says_to_migrate() -> None:
    name = f"es_empty_{os.getpid()}_{time.monotonic_ns()}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        error = _failed_once(
            _run("scheduler", {"DATABASE_URL": db_url(name), "MESSAGE_ID_SECRET": "k" * 32})
        )
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    assert error.startswith("the database has no schema, this code needs version")
    assert error.endswith("run `python -m db migrate`")


def test_a_missing_database_is_named() -> None:
    error = _failed_once(_run("pump", {"DATABASE_URL": db_url("no_such_db"), "AMQP_URL": AMQP_URL}))
    assert error.startswith("database 'no_such_db' does not exist")


@pytest.mark.parametrize(
    ("amqp_url", "needle"),
    [
        (AMQP_URL.rstrip("/") + "/no_such_vhost", "virtual host 'no_such_vhost' of AMQP_URL"),
        (
            AMQP_URL.replace("guest:guest", "guest:wrong"),
            "RabbitMQ refused the login of user 'guest'",
        ),
    ],
)
def test_a_wrong_vhost_or_login_is_named(database: str, amqp_url: str, needle: str) -> None:
    error = _failed_once(_run("pump", {"DATABASE_URL": database, "AMQP_URL": amqp_url}))
    assert needle in error
    assert "wrong" not in error  # the password is never shown


def test_waiting_for_the_database_is_said_every_few_seconds_and_typos_are_named() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "scheduler"],
        cwd=ROOT,
        env={
            "PATH": os.environ["PATH"],
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nothing",
            "MESSAGE_ID_SECRET": "m" * 32,
            "SCHEDULER_BATCH_SIZ": "10",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The clock starts at the first wait line, not at the start of the process: importing
    # takes seconds on a loaded machine.
    assert proc.stdout is not None
    read: list[str] = []
    first_wait = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            read.append(line)
            if '"waiting_for_database"' in line:
                first_wait.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert first_wait.wait(timeout=60), read
    time.sleep(7)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    thread.join(timeout=10)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    proc.stdout.close()
    out = "".join(read)
    assert proc.returncode == 0, out + err
    lines = _json_lines(out)
    assert {
        "event": "unknown_setting",
        "variable": "SCHEDULER_BATCH_SIZ",
        "did_you_mean": "SCHEDULER_BATCH_SIZE",
    }.items() <= lines[0].items()
    waits = [ln for ln in lines if ln["event"] == "waiting_for_database"]
    assert 2 <= len(waits) <= 3, lines  # one line every five seconds, not one per attempt
    assert waits[0]["attempt"] == 1
    assert "Connect call failed" in str(waits[0]["cause"]) or "refused" in str(waits[0]["cause"])


async def test_health_check_fails_while_the_loop_is_stalled(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, tmp_path: Path
) -> None:
    health_env = {"HEALTH_DIR": str(tmp_path / "health"), "HEALTH_MAX_AGE_SECONDS": "3"}
    env = daemon_env(database, amqp_prefix, 25, SCHEDULER_POLL_SECONDS="0.5", **health_env)
    daemons = Daemons(env, tmp_path)
    daemons.start("scheduler")

    def health() -> subprocess.CompletedProcess[str]:
        # What compose's health checks run.
        return _run("ops", health_env, "health", "--service", "scheduler", timeout=30)

    async def replicas() -> list[str]:
        rows = await pool.fetch("SELECT service, version FROM daemon_replicas")
        return [f"{r['service']} {r['version']}" for r in rows]

    try:
        await wait_for(lambda: health().returncode == 0, timeout=30, interval=0.5)
        assert _run("scheduler", health_env, "--health").returncode == 0
        # Every replica also reports to the database, for `ops status` on any host.
        assert await wait_for(replicas, timeout=15) == ["scheduler 0.1.0"]
        # A lock the scheduler's claim waits for: the process is up, its loop is not turning.
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE leads IN ACCESS EXCLUSIVE MODE")
            await asyncio.sleep(5)
            stalled = health()
        assert stalled.returncode == 1
        assert stalled.stdout.startswith("unhealthy: scheduler pid")
        assert "made no progress for" in stalled.stdout
        await wait_for(lambda: health().returncode == 0, timeout=30, interval=0.5)
    finally:
        codes = daemons.stop_all()
    assert all(c == 0 for c in codes.values()), daemons.logs()[-2000:]
    assert health().returncode == 1  # no live scheduler any more
    assert await replicas() == []  # a stopped replica takes itself off the list


@pytest.mark.parametrize(
    "module", ["scheduler", "pump", "worker", "inbox", "webhooks", "api", "ops", "db"]
)
def test_every_command_answers_help_and_version_without_starting(module: str) -> None:
    """No settings in the environment: a command that tried to start would exit 2 naming
    DATABASE_URL; these answer at once and start nothing."""
    env = {"PATH": os.environ["PATH"]}
    for flag, needle in (("--help", "usage: python -m " + module), ("--version", "0.")):
        proc = subprocess.run(
            [sys.executable, "-m", module, flag], cwd=ROOT, env=env, capture_output=True,
            text=True, timeout=30,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert needle in proc.stdout, proc.stdout
        assert "started" not in proc.stdout + proc.stderr


def test_a_cli_command_gives_up_on_an_unreachable_database() -> None:
    """`ops status` with nothing listening where the database should be: exit 1 after
    --wait seconds, the error as JSON with --json (a daemon waits; a command does not)."""
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "ops", "status", "--json", "--wait", "2"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    took = time.monotonic() - started
    assert proc.returncode == 1
    error = json.loads(proc.stdout)
    assert error["exit"] == 1
    assert "could not be reached within 2 s" in error["error"]
    assert 2 <= took < 15, took


def test_the_installed_command_and_its_shell_completion() -> None:
    """`email-scheduler` (installed by `uv sync`, pyproject's [project.scripts]) is the
    operator's CLI; its bash completion, loaded into a real bash, completes commands,
    actions and flags."""
    command = Path(sys.executable).parent / "email-scheduler"
    env = {"PATH": f"{command.parent}:{os.environ['PATH']}"}
    version = subprocess.run(["email-scheduler", "--version"], env=env, capture_output=True,
                             text=True, timeout=30, check=True)  # fmt: skip
    assert version.stdout.startswith("email-scheduler 0.")
    script = """
        source <(email-scheduler completion bash)
        spec=$(complete -p email-scheduler); fn=${spec#*-F }; fn=${fn%% *}
        ask() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); $fn; echo "${COMPREPLY[*]}"; }
        ask email-scheduler seq
        ask email-scheduler sequence cr
        ask email-scheduler step set --af
        ask email-scheduler sender create x@y.test --daily
    """
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=30, check=True)  # fmt: skip
    assert done.stdout.splitlines() == ["sequence", "create", "--after", "--daily --daily-new"]


def test_a_dkim_key_the_worker_cannot_read_stops_it_with_the_fix(
    database: str, amqp_prefix: str, tmp_path: Path
) -> None:
    """A 0600 key of another user (root's, beside a container's uid 10001): the worker does
    not start; one line names the key and the fix, exit 2. Here the key is uid
    10001's and the worker runs as root without the capability to read others' files."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux)")
    keys = tmp_path / "keys"
    subprocess.run(
        [sys.executable, "-m", "ops", "dkim", "create", "acme.test", "s1"], cwd=ROOT,
        env={"PATH": os.environ["PATH"], "DKIM_KEYS_DIR": str(keys)}, capture_output=True,
        text=True, timeout=60, check=True,
    )  # fmt: skip
    key = keys / "acme.test" / "s1.pem"
    os.chown(key, 10001, 10001)
    key.chmod(0o600)
    env = {**daemon_env(database, amqp_prefix, 1), "DKIM_KEYS_DIR": str(keys),
           "HEALTH_DIR": str(tmp_path / "health"), "PATH": os.environ["PATH"]}  # fmt: skip
    without = "-dac_override,-dac_read_search"
    proc = subprocess.run(
        ["setpriv", f"--inh-caps={without}", f"--bounding-set={without}", "--",
         sys.executable, "-m", "worker"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr == (
        f"invalid settings: DKIM_KEYS_DIR {key} is not readable by uid 0: make it so"
        " (`chgrp 0 KEY; chmod 0640 KEY`)\n"
    )
    assert "started" not in proc.stdout
