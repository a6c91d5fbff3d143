"""Settings: one clear line naming the bad variable, exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
from pydantic import ValidationError

from runtime.settings import (
    SchedulerSettings,
    SmtpTls,
    WorkerSettings,
    describe,
    unknown_variables,
)
from worker.__main__ import ehlo_name

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
        # One-click links without a key anybody could forge, or with a key too short.
        (
            "scheduler",
            {"UNSUBSCRIBE_URL": "https://u.test/u"},
            "UNSUBSCRIBE_URL needs UNSUBSCRIBE_SECRET of at least 32 bytes",
        ),
        (
            "scheduler",
            {"UNSUBSCRIBE_URL": "https://u.test/u", "UNSUBSCRIBE_SECRET": "x" * 31},
            "UNSUBSCRIBE_SECRET of at least 32",
        ),
        # A password over plain text to another host.
        (
            "worker",
            {"SMTP_HOST": "relay.example.com", "SMTP_USERNAME": "u", "SMTP_PASSWORD": "secret"},
            "SMTP_TLS is none, so SMTP_USERNAME's password would cross the network to relay.example.com in clear",
        ),
        ("worker", {"SMTP_LOCAL_HOSTNAME": "bad name"}, "SMTP_LOCAL_HOSTNAME"),
        ("scheduler", {"RENDER_TIMEOUT_SECONDS": "0"}, "RENDER_TIMEOUT_SECONDS"),
        # Message-IDs anyone could compute (what a reply must refer to).
        ("scheduler", {"MESSAGE_ID_SECRET": ""}, "MESSAGE_ID_SECRET"),
        ("scheduler", {"MESSAGE_ID_SECRET": "x" * 31}, "MESSAGE_ID_SECRET must be at least 32"),
    ],
)
def test_daemon_exits_2_with_one_line(module: str, env: dict[str, str], needle: str) -> None:
    full = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": "postgresql://x@127.0.0.1/none",
        "AMQP_URL": "amqp://g:g@127.0.0.1/",
        "MESSAGE_ID_SECRET": "m" * 32,
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


def test_empty_values_count_as_unset() -> None:
    """compose's `${X:-}` writes empty strings: they mean "not set", not "set to nothing"."""
    env = {"DATABASE_URL": "postgresql://x@h/d", "UNSUBSCRIBE_URL": "", "UNSUBSCRIBE_SECRET": "",
           "MESSAGE_ID_SECRET": "k" * 32}  # fmt: skip
    old = dict(os.environ)
    try:
        os.environ.update(
            env
            | {"SMTP_USERNAME": "", "SMTP_HOST": "relay.example.com", "AMQP_URL": "amqp://g:g@h/"}
        )
        assert SchedulerSettings().unsubscribe_url is None
        worker = WorkerSettings()
        assert worker.smtp_username is None  # so no AUTH, and no refusal for plain text
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_plain_text_auth_to_loopback_or_when_allowed_is_accepted() -> None:
    local = WorkerSettings.model_validate({**BASE, "smtp_host": "127.0.0.1", "smtp_username": "u"})
    assert local.smtp_tls is SmtpTls.NONE
    allowed = WorkerSettings.model_validate(
        {**BASE, "smtp_host": "relay", "smtp_username": "u", "smtp_allow_plaintext_auth": True}
    )
    assert allowed.smtp_username == "u"


def test_unknown_variables_with_our_prefixes_name_the_closest_valid_one() -> None:
    found = dict(
        unknown_variables(
            {
                "SMTP_HOTS": "x",
                "WORKER_CONCURENCY": "2",
                "SMTP_HOST": "y",
                "HOME": "/",
                "PUMP_X": "1",
            }
        )
    )
    assert found == {
        "SMTP_HOTS": "SMTP_HOST",
        "WORKER_CONCURENCY": "WORKER_CONCURRENCY",
        "PUMP_X": None,
    }


@pytest.mark.parametrize(
    ("name", "warned"),
    [("localhost", True), ("mybox", True), ("host.local", True), ("mail.acme.test", False)],
)
def test_an_ehlo_name_that_is_not_fully_qualified_is_warned_about(name: str, warned: bool) -> None:
    settings = WorkerSettings.model_validate({**BASE, "smtp_local_hostname": name})
    with structlog.testing.capture_logs() as logs:
        assert ehlo_name(settings) == name
    assert [e["event"] for e in logs] == (["smtp_local_hostname_not_qualified"] if warned else [])


def test_a_dkim_key_directory_that_does_not_load_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="dkim_keys_dir") as err:
        WorkerSettings.model_validate({**BASE, "dkim_keys_dir": tmp_path / "missing"})
    assert "is not a directory" in str(err.value)
    (tmp_path / "acme.test").mkdir()
    (tmp_path / "acme.test" / "s1.pem").write_text("-----BEGIN PRIVATE KEY-----\nnope\n")
    with pytest.raises(ValidationError, match=r"acme\.test/s1: not an unencrypted PEM"):
        WorkerSettings.model_validate({**BASE, "dkim_keys_dir": tmp_path})
    with pytest.raises(ValidationError, match="list_id_domain"):
        WorkerSettings.model_validate({**BASE, "list_id_domain": "not a domain"})
