"""Hostile and careless data against the daemons as processes: each bad row fails alone,
the good leads inserted after it are sent, and the daemons stay up (and stop cleanly)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import wait_for
from tests.e2e.daemons import Daemons, daemon_env
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.e2e

SETUP = """
    INSERT INTO senders (email, name) VALUES ('sales@acme.test', 'Ana');
    INSERT INTO sequences (name, timezone, send_from, send_until)
    VALUES ('Good', 'UTC', NULL, NULL), ('Bombs', 'UTC', NULL, NULL),
           ('Midnight', 'UTC', '00:00', '24:00');
    INSERT INTO sequence_steps (sequence_id, position, subject, body_text) VALUES
        (1, 1, 'Hi {{ first_name }}', 'Hello'),
        (2, 1, 'x', '{% if bomb == "loop" %}{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}'
                    '{% elif bomb == "nul" %}{{ "\\x00" }}'
                    '{% elif bomb == "huge" %}{{ "a" * 10**8 }}'
                    '{% elif bomb == "big" %}{% for i in range(20000) %}{{ "0123456789" * 100 }}{% endfor %}'
                    '{% else %}fine{% endif %}'),
        (3, 1, 'Midnight', 'Hello');
"""


async def _reason(pool: asyncpg.Pool, email: str) -> tuple[str, str | None, str | None]:
    r = await pool.fetchrow(
        """SELECT l.status, e.data->>'reason' AS reason, e.data->>'error' AS error FROM leads l
           LEFT JOIN events e ON e.lead_id = l.id AND e.type = 'failed' WHERE l.email = $1""",
        email,
    )
    assert r is not None
    return r["status"], r["reason"], r["error"]


async def test_template_bombs_nul_and_midnight_fail_alone_and_good_leads_go_out(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer, tmp_path: Path
) -> None:
    await pool.execute(SETUP)
    # The window '00:00'-'24:00' is stored as "until the end of the day".
    assert await pool.fetchval("SELECT send_until FROM sequences WHERE id = 3") is None
    await pool.execute("""
        INSERT INTO leads (sequence_id, sender_id, email, attributes) VALUES
            (2, 1, 'loop1@x.test', '{"bomb": "loop"}'), (2, 1, 'loop2@x.test', '{"bomb": "loop"}'),
            (2, 1, 'nul@x.test', '{"bomb": "nul"}'), (2, 1, 'huge@x.test', '{"bomb": "huge"}'),
            (2, 1, 'big@x.test', '{"bomb": "big"}'), (2, 1, 'fine@x.test', '{"bomb": "no"}'),
            (3, 1, 'midnight@x.test', '{}')""")
    env = daemon_env(database, amqp_prefix, smtp.port, RENDER_TIMEOUT_SECONDS="0.5")
    daemons = Daemons(env, tmp_path)
    for module in ("scheduler", "pump", "worker"):
        daemons.start(module)
    try:
        # Good leads inserted after the hostile ones still go out.
        await pool.execute("""INSERT INTO leads (sequence_id, sender_id, email, first_name)
                              SELECT 1, 1, 'good' || i || '@x.test', 'G' || i
                              FROM generate_series(1, 20) i""")
        await wait_for(lambda: len(smtp.received) == 22, timeout=60)
        await wait_for(
            lambda: pool.fetchval("SELECT count(*) = 5 FROM leads WHERE status = 'failed'"),
            timeout=30,
        )
    finally:
        codes = daemons.stop_all()
    assert all(c == 0 for c in codes.values()), (codes, daemons.logs()[-3000:])
    rcpts = sorted(r.rcpt_to[0] for r in smtp.received)
    assert rcpts == sorted(
        [f"good{i}@x.test" for i in range(1, 21)] + ["fine@x.test", "midnight@x.test"]
    )
    for email, error in [
        ("loop1@x.test", "body_text: rendering took longer than 0.5 s"),
        ("loop2@x.test", "body_text: rendering took longer than 0.5 s"),
        ("nul@x.test", "body_text: the rendered text contains a NUL character"),
        ("huge@x.test", "body_text: a repetition would build more than 524288 characters"),
        ("big@x.test", "body_text: output larger than 524288 characters"),
    ]:
        assert await _reason(pool, email) == ("failed", "template_error", error)


async def test_sigterm_during_a_template_bomb_stops_the_scheduler_cleanly(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer, tmp_path: Path
) -> None:
    await pool.execute(SETUP)
    await pool.execute("""INSERT INTO leads (sequence_id, sender_id, email, attributes)
                          VALUES (2, 1, 'loop@x.test', '{"bomb": "loop"}')""")
    env = daemon_env(
        database, amqp_prefix, smtp.port, RENDER_TIMEOUT_SECONDS="30", SHUTDOWN_TIMEOUT_SECONDS="3"
    )
    daemons = Daemons(env, tmp_path)
    proc = daemons.start("scheduler")
    try:
        await wait_for(lambda: "scheduler_started" in daemons.logs(), timeout=30)
        await asyncio.sleep(2)  # inside the bomb's 30 s budget now
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
    finally:
        daemons.stop_all()
    assert code == 0, daemons.logs()[-3000:]
    # The shutdown budget (3 s) ends the wait, not the bomb; nothing was written for the lead.
    assert time.monotonic() - started < 10
    assert await pool.fetchval("SELECT status FROM leads") == "active"
