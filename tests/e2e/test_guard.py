"""The reputation guard end to end: the scheduler, pump and two workers as processes, a real
SMTP server that refuses what a bad list or a blocklist would, and the operator's door.

- A list that turns bad (one recipient in five unknown from the 30th message on): the
  sender pauses on its hard-bounce rate; after the crossing at most the stated bound of
  further hand-offs leave it; its other leads wait with no attempt spent, nothing more
  suppressed; a second sender goes on untouched; `ops sender resume` sends the rest.
- A blocklist storm (`554 5.7.1 ... blocked using zen.spamhaus.org` to every recipient of
  one sender): no suppression, no failed lead, the sender paused, resumed by the probe once
  the storm is over, every message sent once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import AMQP_URL, wait_for
from tests.e2e.daemons import ROOT, Daemons, daemon_env
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.e2e
WORKERS, CONCURRENCY, PREFETCH = 2, 4, 16
BAD, GOOD, STORMY = "ana@acme.test", "bo@acme.test", "cy@acme.test"


def _start(database: str, amqp_prefix: str, smtp: SmtpServer, log_dir: Path) -> Daemons:
    env = daemon_env(
        database, amqp_prefix, smtp.port, HEALTH_DIR=str(log_dir / "health"),
        WORKER_CONCURRENCY=str(CONCURRENCY), WORKER_PREFETCH=str(PREFETCH),
        GUARD_MIN_SAMPLE="20", GUARD_COOLDOWN_SECONDS="2", SMTP_CIRCUIT_SECONDS="1",
        PROVIDER_BACKOFF_SECONDS="1",
        SEND_MAX_ATTEMPTS="3",
    )  # fmt: skip
    daemons = Daemons(env, log_dir)
    daemons.start("scheduler")
    daemons.start("pump")
    for i in range(WORKERS):
        daemons.start("worker", i)
    return daemons


async def _setup(pool: asyncpg.Pool, leads: list[tuple[str, str]]) -> None:
    await pool.execute(
        f"""
        INSERT INTO senders (email) VALUES ('{BAD}'), ('{GOOD}'), ('{STORMY}');
        INSERT INTO sequences (name) VALUES ('Cold');
        INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
        VALUES (1, 1, 0, 'Hello', 'Hi');
        """
    )
    # One by one, due in this order: the sender's hand-offs go roughly in it.
    await pool.executemany(
        """INSERT INTO leads (sequence_id, sender_id, email, next_run_at)
           SELECT 1, s.id, $2, now() + make_interval(secs => $3)
           FROM senders s WHERE s.email = $1""",
        [(sender, email, i * 0.001) for i, (sender, email) in enumerate(leads)],
    )


def _ops(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": database, "AMQP_URL": AMQP_URL}
    return subprocess.run(
        [sys.executable, "-m", "ops", *args], cwd=ROOT, capture_output=True, text=True,
        env=env, timeout=60, check=False,
    )  # fmt: skip


async def test_a_list_that_turns_bad_pauses_its_sender_within_the_bound(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer, tmp_path: Path
) -> None:
    bad = [f"l{i}@x.test" if i < 30 or i % 5 else f"dead{i}@x.test" for i in range(200)]
    for address in bad:
        if address.startswith("dead"):
            smtp.handler.rules.rcpt[address] = f"550 5.1.1 <{address}>: User unknown"
    good = [f"g{i}@y.test" for i in range(40)]
    await _setup(pool, [(BAD, a) for a in bad] + [(GOOD, a) for a in good])
    daemons = _start(database, amqp_prefix, smtp, tmp_path)
    try:
        paused = await wait_for(
            lambda: pool.fetchrow("SELECT data FROM events WHERE type = 'sender_paused'"),
            timeout=60,
        )
        await wait_for(
            lambda: pool.fetchval(
                "SELECT count(*) = 40 FROM leads WHERE email LIKE 'g%' AND status = 'completed'"
            ),
            timeout=60,
        )
        # Let whatever was under way land, then count.
        await wait_for(
            lambda: pool.fetchval("SELECT count(*) = 0 FROM leads WHERE status = 'queued'"),
            timeout=30,
        )
        data = paused["data"]
        assert (data["rate"], data["threshold"]) == ("hard_bounce_rate", 0.05)
        tried = Counter(frm for frm, _, _ in smtp.handler.rules.tried)
        further = tried[BAD] - data["window"]
        bound = WORKERS * PREFETCH
        print(f"\nguard: paused after {data['window']} hand-offs ({data['value']:.1%} hard"
              f" bounces); {further} further hand-offs (bound {bound})")  # fmt: skip
        assert 0 <= further <= bound
        status = await pool.fetchrow(
            "SELECT status, paused_reason FROM senders WHERE email = $1", BAD
        )
        assert status is not None
        assert status["status"] == "paused"
        assert status["paused_reason"].startswith("hard_bounce_rate")
        # Its other leads wait: not failed, no attempt spent, nothing more suppressed.
        waiting = await pool.fetch(
            """SELECT l.status, d.status AS delivery, d.attempts FROM leads l
               LEFT JOIN deliveries d ON d.lead_id = l.id
               WHERE l.email LIKE 'l%' AND l.status <> 'completed'"""
        )
        assert waiting
        assert {r["status"] for r in waiting} == {"active"}
        assert all(r["attempts"] in (None, 0) for r in waiting)
        suppressed = await pool.fetchval("SELECT count(*) FROM suppressions WHERE email LIKE 'l%'")
        assert suppressed == 0
        failed = await pool.fetchval("SELECT count(*) FROM leads WHERE status = 'failed'")
        assert failed == sum(1 for a in bad if a.startswith("dead")
                             and (a, 550) in {(r, c) for _, r, c in smtp.handler.rules.tried})  # fmt: skip
        # The other sender went on untouched.
        assert tried[GOOD] == 40
        assert await pool.fetchval("SELECT status FROM senders WHERE email = $1", GOOD) == "active"
        # `ops status` shows it; the operator resumes it (the list cleaned) and the rest goes.
        shown = _ops(database, "status")
        assert shown.returncode == 0, shown.stderr
        assert "PAUSED by the guard: hard_bounce_rate" in shown.stdout
        smtp.handler.rules.rcpt.clear()
        resumed = _ops(database, "sender", "resume", BAD)
        assert resumed.returncode == 0, resumed.stderr
        assert _ops(database, "sender", "resume", BAD).returncode == 1  # not paused now
        await wait_for(
            lambda: pool.fetchval(
                "SELECT count(*) = 0 FROM leads WHERE status IN ('active', 'queued')"
            ),
            timeout=60,
        )
    finally:
        codes = daemons.stop_all()
    assert all(c == 0 for c in codes.values()), daemons.logs()[-3000:]
    received = Counter(r.rcpt_to[0] for r in smtp.received)
    assert all(n == 1 for n in received.values())  # every message sent once


async def test_a_blocklist_storm_pauses_probes_and_resumes_without_a_lost_lead(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer, tmp_path: Path
) -> None:
    leads = [f"s{i}@z.test" for i in range(120)]
    await _setup(pool, [(STORMY, a) for a in leads])
    smtp.handler.rules.by_sender[STORMY] = (
        "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org"
    )
    daemons = _start(database, amqp_prefix, smtp, tmp_path)
    try:
        await wait_for(
            lambda: pool.fetchval("SELECT count(*) >= 2 FROM events WHERE type = 'sender_paused'"),
            timeout=90,
        )  # paused, probed, refused again: paused once more
        smtp.handler.rules.by_sender.clear()  # the storm is over
        await wait_for(
            lambda: pool.fetchval("SELECT count(*) = 120 FROM leads WHERE status = 'completed'"),
            timeout=120,
        )
    finally:
        codes = daemons.stop_all()
    assert all(c == 0 for c in codes.values()), daemons.logs()[-3000:]
    pauses = await pool.fetch("SELECT data FROM events WHERE type = 'sender_paused' ORDER BY id")
    assert {p["data"]["rate"] for p in pauses} == {"block_rate"}
    probes = await pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'sender_resumed' AND data->>'by' = 'probe'"
    )
    assert probes >= 2
    assert await pool.fetchval("SELECT status FROM senders WHERE email = $1", STORMY) == "active"
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 0
    assert await pool.fetchval("SELECT count(*) FROM leads WHERE status = 'failed'") == 0
    received = Counter(r.rcpt_to[0] for r in smtp.received)
    assert sorted(received) == sorted(leads)
    assert set(received.values()) == {1}


async def test_one_provider_throttling_backs_off_that_provider_only(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer, tmp_path: Path
) -> None:
    """Yahoo answers TSS04 to a sender: its gmail.com mail goes on at its pace, its
    yahoo.com mail waits (no lead failed or suppressed, no attempt spent) and goes once
    Yahoo takes mail again."""
    gmail = [f"g{i}@gmail.com" for i in range(30)]
    yahoo = [f"y{i}@yahoo.com" for i in range(30)]
    tss04 = ("421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to"
             " unexpected volume or user complaints - 4.16.55.1")  # fmt: skip
    for address in yahoo:
        smtp.handler.rules.rcpt[address] = tss04
    leads = [(GOOD, a) for pair in zip(gmail, yahoo, strict=True) for a in pair]
    await _setup(pool, leads)
    daemons = _start(database, amqp_prefix, smtp, tmp_path)
    try:
        await wait_for(
            lambda: pool.fetchval(
                "SELECT count(*) = 30 FROM leads WHERE email LIKE '%@gmail.com'"
                " AND status = 'completed'"
            ),
            timeout=60,
        )
        shown = _ops(database, "status")
        assert "backing off at yahoo until" in shown.stdout, shown.stdout
        tried_yahoo = sum(1 for _, r, _ in smtp.handler.rules.tried if r.endswith("@yahoo.com"))
        # Backing off, the sender tried Yahoo a few times, not once per lead and attempt.
        assert tried_yahoo < 30
        assert await pool.fetchval("SELECT count(*) FROM leads WHERE status = 'failed'") == 0
        smtp.handler.rules.rcpt.clear()  # Yahoo takes mail again
        await wait_for(
            lambda: pool.fetchval("SELECT count(*) = 60 FROM leads WHERE status = 'completed'"),
            timeout=90,
        )
    finally:
        codes = daemons.stop_all()
    assert all(c == 0 for c in codes.values()), daemons.logs()[-3000:]
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 0
    assert await pool.fetchval("SELECT count(*) FROM senders WHERE status = 'paused'") == 0
    attempts = await pool.fetchval("SELECT max(attempts) FROM deliveries")
    assert attempts == 1  # the throttled tries spent no attempt
    received = Counter(r.rcpt_to[0] for r in smtp.received)
    assert sorted(received) == sorted(gmail + yahoo)
    assert set(received.values()) == {1}


async def test_a_cap_at_one_provider_holds_that_providers_mail_to_the_next_day(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer, tmp_path: Path
) -> None:
    """`ops sender set --provider-cap yahoo=3`: three yahoo.com leads go, two others wait
    (no attempt spent) until the first of the three is a day old; gmail.com mail of the
    same sender is not held; `ops status` shows the count; the cap removed, the two go."""
    gmail = [f"g{i}@gmail.com" for i in range(5)]
    yahoo = [f"y{i}@yahoo.com" for i in range(5)]
    await _setup(pool, [(GOOD, a) for pair in zip(yahoo, gmail, strict=True) for a in pair])
    capped = _ops(database, "sender", "set", GOOD, "--provider-cap", "yahoo=3")
    assert capped.returncode == 0, capped.stderr
    refused = _ops(database, "sender", "set", GOOD, "--provider-cap", "aol=3")
    assert refused.returncode != 0
    assert "PROVIDER=N with a provider of google" in refused.stderr
    daemons = _start(database, amqp_prefix, smtp, tmp_path)
    try:
        await wait_for(
            lambda: pool.fetchval("SELECT count(*) = 8 FROM leads WHERE status = 'completed'"),
            timeout=60,
        )
        held = await pool.fetch(
            "SELECT l.email, l.next_run_at - now() AS wait, d.attempts FROM leads l"
            " LEFT JOIN deliveries d ON d.lead_id = l.id WHERE l.status <> 'completed'"
        )
        assert len(held) == 2
        assert all(r["email"].endswith("@yahoo.com") for r in held)
        for r in held:
            assert r["wait"].total_seconds() > 23 * 3600  # a day after the first yahoo hand-off
            assert (r["attempts"] or 0) == 0
        reasons = await pool.fetch(
            "SELECT DISTINCT data->>'reason' AS r FROM events WHERE type = 'deferred'"
            " AND lead_id IN (SELECT id FROM leads WHERE status <> 'completed')"
        )
        assert [r["r"] for r in reasons] == ["provider_cap"]
        shown = _ops(database, "status")
        assert "today at providers: yahoo 3/3" in shown.stdout, shown.stdout
        uncapped = _ops(database, "sender", "set", GOOD, "--provider-cap", "yahoo=none")
        assert uncapped.returncode == 0, uncapped.stderr
        await wait_for(
            lambda: pool.fetchval("SELECT count(*) = 10 FROM leads WHERE status = 'completed'"),
            timeout=60,
        )
    finally:
        codes = daemons.stop_all()
    assert all(c == 0 for c in codes.values()), daemons.logs()[-3000:]
    received = Counter(r.rcpt_to[0] for r in smtp.received)
    assert sorted(received) == sorted(gmail + yahoo)
    assert set(received.values()) == {1}
    assert await pool.fetchval("SELECT provider_caps FROM senders WHERE email = $1", GOOD) == {}
    # The operator's two changes are audited, through the CLI; the daemons' own writes to
    # the sender (its booked slots) are not operator changes.
    audited = await pool.fetch("SELECT door, action, before, after FROM audit_log ORDER BY id")
    assert [(a["door"], a["action"]) for a in audited] == [("cli", "update"), ("cli", "update")]
    assert (audited[0]["before"]["provider_caps"], audited[0]["after"]["provider_caps"]) == (
        {}, {"yahoo": 3}
    )  # fmt: skip
