"""Webhooks end to end: the scheduler, pump, two workers and the webhooks deliverer as
processes, endpoints subscribed with `ops webhook add`, and receivers that check every POST
with the `standardwebhooks` package.

- One receiver answers 500 to the first two tries of each message: the same webhook-id
  comes again until it answers 200.
- The deliverer and a worker are killed (SIGKILL) mid-run and started again: every event of
  a subscribed type in the database reaches the receiver, each under one webhook-id.
- Another endpoint is down for the first minute: it gets everything afterwards, while the
  first one's deliveries went on meanwhile.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import AMQP_URL, wait_for
from tests.e2e.daemons import ROOT, Daemons, daemon_env
from tests.ports import free_port
from tests.smtp_server import SmtpServer
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.e2e
LEADS = 40
DOWN_SECONDS = 60


def _ops(database: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ["PATH"], "DATABASE_URL": database, "AMQP_URL": AMQP_URL, **env}
    return subprocess.run(
        [sys.executable, "-m", "ops", *args], cwd=ROOT, capture_output=True, text=True,
        env=full, timeout=60, check=False,
    )  # fmt: skip


def _subscribe(database: str, url: str, events: str) -> tuple[int, str]:
    added = _ops(database, "webhook", "add", url, "--events", events,
                 WEBHOOK_ALLOW_PRIVATE="true")  # fmt: skip
    assert added.returncode == 0, added.stderr
    first, secret = added.stdout.strip().splitlines()
    assert secret.startswith("whsec_")
    return int(first.split("\t")[0]), secret


async def _events(pool: asyncpg.Pool, *types: str) -> set[int]:
    rows = await pool.fetch("SELECT id FROM events WHERE type = ANY($1::text[])", list(types))
    return {r["id"] for r in rows}


async def test_every_event_reaches_each_endpoint_signed_once_per_id_through_kills(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer, tmp_path: Path
) -> None:
    # Without WEBHOOK_ALLOW_PRIVATE, a loopback target is refused at the door.
    refused = _ops(database, "webhook", "add", "http://127.0.0.1:9/x", "--events", "lead.sent")
    assert refused.returncode == 1
    assert "WEBHOOK_ALLOW_PRIVATE" in refused.stderr
    flaky, late = Receiver(free_port(), fail_first=2), Receiver(free_port())
    flaky_id, flaky.secret = _subscribe(
        database, f"http://127.0.0.1:{flaky.port}/hooks", "lead.sent,lead.completed"
    )
    _, late.secret = _subscribe(database, f"http://127.0.0.1:{late.port}/in", "lead.completed")
    flaky.start()
    await pool.execute(
        """
        INSERT INTO senders (email) VALUES ('sales@acme.test');
        INSERT INTO sequences (name) VALUES ('Cold');
        INSERT INTO sequence_senders (sequence_id, sender_id) VALUES (1, 1);
        INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
        VALUES (1, 1, 0, 'Hello', 'Hi');
        """
    )
    env = daemon_env(
        database, amqp_prefix, smtp.port, HEALTH_DIR=str(tmp_path / "health"),
        WEBHOOK_ALLOW_PRIVATE="true", WEBHOOK_RETRY_FIRST_SECONDS="0.5",
        WEBHOOK_RETRY_MAX_SECONDS="4", WEBHOOK_POLL_SECONDS="0.2", WEBHOOK_TIMEOUT_SECONDS="2",
    )  # fmt: skip
    daemons = Daemons(env, tmp_path)
    started = time.monotonic()
    try:
        for module in ("scheduler", "pump", "worker", "worker", "webhooks"):
            daemons.start(module, len(daemons.procs))
        await pool.execute(
            "INSERT INTO leads (sequence_id, sender_id, email)"
            " SELECT 1, 1, 'lead' || i || '@example.test' FROM generate_series(1, $1) i",
            LEADS,
        )
        await wait_for(lambda: len(flaky.verified) >= 5, timeout=60)
        # Mid-run: the deliverer and a worker die without a word, and come back.
        for name in ("webhooks", "worker"):
            proc = next(p for n, p in daemons.procs if n == name and p.poll() is None)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            daemons.start(name, len(daemons.procs))
        await wait_for(
            lambda: pool.fetchval(
                "SELECT count(*) = $1 FROM leads WHERE status NOT IN ('active', 'queued')", LEADS
            ),
            timeout=90,
        )
        told = await _events(pool, "sent", "completed")

        def flaky_has_all() -> bool:
            return set(flaky.ids_per_event()) >= told

        await wait_for(flaky_has_all, timeout=60)
        # The late endpoint comes up after a minute and gets everything then.
        assert late.verified == []
        await wait_for(lambda: time.monotonic() - started >= DOWN_SECONDS, timeout=DOWN_SECONDS)
        late.start()
        completed = await _events(pool, "completed")
        await wait_for(lambda: set(late.ids_per_event()) >= completed, timeout=30)
    finally:
        codes = daemons.stop_all()
        flaky.stop()
        late.stop()
    assert all(c in (0, -9) for c in codes.values()), daemons.logs()[-3000:]
    assert flaky.refused == []
    assert late.refused == []
    # Each event under one webhook-id, tried until it was answered 200.
    ids = flaky.ids_per_event()
    assert set(ids) == told
    assert all(len(v) == 1 for v in ids.values())
    assert all(flaky.tries[next(iter(v))] >= 3 for v in ids.values())
    sent = flaky.by_type("lead.sent")
    assert {r.payload["data"]["email"] for r in sent} <= {
        f"lead{i}@example.test" for i in range(1, LEADS + 1)
    }
    assert {r.payload["data"]["sender_id"] for r in sent} == {1}
    listed = _ops(database, "webhook", "list")
    assert f"{flaky_id}\thttp://127.0.0.1:{flaky.port}/hooks" in listed.stdout
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 0
