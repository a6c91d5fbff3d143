"""Settings: one clear line naming the bad variable, exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from runtime.settings import SmtpTls, WorkerSettings, describe

ROOT = Path(__file__).resolve().parents[2]
BASE = {"database_url": "postgresql://x@h/d", "amqp_url": "amqp://g:g@h/"}


def test_defaults_and_parsing() -> None:
    s = WorkerSettings.model_validate({**BASE, "smtp_tls": "starttls", "log_level": "debug"})
    assert s.smtp_tls is SmtpTls.STARTTLS
    assert s.log_level == "DEBUG"
    assert s.worker_concurrency == 16


def test_prefetch_is_four_per_connection_unless_set() -> None:
    assert WorkerSettings.model_validate({**BASE, "worker_concurrency": 8}).prefetch == 32
    explicit = WorkerSettings.model_validate(
        {**BASE, "worker_concurrency": 8, "worker_prefetch": 5}
    )
    assert explicit.prefetch == 5
    with pytest.raises(ValidationError, match="worker_prefetch"):
        WorkerSettings.model_validate({**BASE, "worker_prefetch": -1})


def test_bad_values_are_named() -> None:
    with pytest.raises(ValidationError) as err:
        WorkerSettings.model_validate({**BASE, "smtp_port": "seventy", "smtp_tls": "maybe"})
    line = describe(err.value)
    assert "\n" not in line
    assert "SMTP_PORT" in line
    assert "SMTP_TLS" in line


@pytest.mark.parametrize(
    ("module", "env", "needle"),
    [
        ("worker", {"SMTP_PORT": "nope"}, "SMTP_PORT"),
        ("worker", {"AMQP_URL": ""}, "AMQP_URL"),
        ("scheduler", {"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ("pump", {"PUMP_BATCH_SIZE": "0"}, "PUMP_BATCH_SIZE"),
    ],
)
def test_daemon_exits_2_with_one_line(module: str, env: dict[str, str], needle: str) -> None:
    full = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": "postgresql://x@127.0.0.1/none",
        "AMQP_URL": "amqp://g:g@127.0.0.1/",
        **env,
    }
    proc = subprocess.run(
        [sys.executable, "-m", module],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert needle in lines[0]
    assert "secret" not in proc.stderr


def test_password_never_printed() -> None:
    s = WorkerSettings.model_validate({**BASE, "smtp_password": "hunter2"})
    assert "hunter2" not in repr(s)
