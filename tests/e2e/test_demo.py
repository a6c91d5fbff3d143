"""`make demo`'s runner (`python -m demo`) as a newcomer uses it: one process that brings up
the demo database, the daemons, the console and MailDev; the demo's mail can be read in the
web inbox it names; the console answers; Ctrl-C stops every process it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AMQP_URL, _admin
from tests.e2e.daemons import ROOT
from tests.ports import free_port

pytestmark = pytest.mark.e2e


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - the demo's own
        return json.loads(resp.read().decode())


async def test_make_demo_brings_up_mail_a_person_can_read_and_ctrl_c_stops_it(
    tmp_path: Path,
) -> None:
    if not (ROOT / "demo/node_modules/.bin/maildev").exists():
        pytest.fail("MailDev is not installed: `make demo-deps` (make test runs it)")
    name = f"es_demo_{uuid.uuid4().hex[:8]}"
    mail_port, api_port = free_port(), free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "DEMO_DATABASE": name,
        "DEMO_AMQP_URL": AMQP_URL,
        "DEMO_API_PORT": str(api_port),
        "DEMO_OIDC_PORT": str(free_port()),
        "DEMO_SMTP_PORT": str(free_port()),
        "DEMO_MAIL_PORT": str(mail_port),
        "DEMO_STATE_DIR": str(tmp_path / "demo"),
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        where: dict[str, str] = {}
        lines: list[str] = []
        while not where:
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
            if line.startswith("{"):
                where = json.loads(line)
        assert where["mail"] == f"http://localhost:{mail_port}"
        assert where["console"] == f"http://localhost:{api_port}"
        # The demo's first step reaches the web inbox: four leads (one is suppressed, one
        # has a timezone that does not exist).
        deadline = time.monotonic() + 60
        subjects: list[str] = []
        while time.monotonic() < deadline:
            subjects = [m["subject"] for m in _get(f"http://127.0.0.1:{mail_port}/api/email")]
            if len(subjects) >= 3:
                break
            time.sleep(0.5)
        up_in = time.monotonic() - started
        assert sorted(subjects)[:3] == [
            "Welcome to Acme, Bob", "Welcome to Acme, Carol", "Welcome to Acme, Dave",
        ], subjects  # fmt: skip
        print(f"\nmake demo's runner: mail to read {up_in:.1f} s after it started")
        assert _get(f"http://127.0.0.1:{api_port}/healthz") == {"status": "ok"}
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/", timeout=5) as resp:
            assert "Sign in" in resp.read().decode()
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(60) == 0
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert "demo: stopping" in rest
    # Nothing it started is left running.
    left = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True, check=False
    )
    assert left.stdout == ""
    for port in (mail_port, api_port):
        with pytest.raises(urllib.error.URLError, match="Connection refused"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
