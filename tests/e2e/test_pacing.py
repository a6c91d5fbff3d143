"""End to end with replicas: 2 schedulers, 1 pump and 2 workers as processes, measured at a
real SMTP server: per-sender gaps with jitter, a rolling-hour cap that defers a lead until the
oldest send ages out, threading headers and one-line unsubscribe headers with a valid token.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from core.unsubscribe import verify_token
from tests.conftest import wait_for
from tests.e2e.daemons import Daemons, daemon_env
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret-of-thirty-two-bytes-x"
GAP, JITTER = 1, 1
# At the server a gap can be short by how late the previous hand-off was (the process was
# not scheduled at its slot); the ledger, booked under the sender's lock, is exact.
TOLERANCE = 0.1


async def test_replicas_keep_gaps_caps_threads_and_unsubscribe_headers(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer, tmp_path: Path
) -> None:
    await pool.execute(f"""
        INSERT INTO senders (email, name, min_gap_seconds, jitter_seconds, hourly_limit)
        VALUES ('gap@acme.test', 'Gap', {GAP}, {JITTER}, NULL),
               ('cap@acme.test', 'Cap', 0, 0, 3);
        -- cap@ used its hour: 3 sends that leave the rolling hour in 6, 7 and 8 s.
        INSERT INTO sender_sends (sender_id, at)
        SELECT 2, now() - interval '1 hour' + make_interval(secs => s) FROM generate_series(6, 8) s;
        INSERT INTO sequences (name) VALUES ('S');
        INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text) VALUES
            (1, 1, 0, 'Hello {{{{ first_name }}}}', 'Hi. Unsubscribe: {{{{ unsubscribe_url }}}}'),
            (1, 2, 0, NULL, 'Following up'),
            (1, 3, 0, NULL, 'Last one');
        INSERT INTO leads (sequence_id, sender_id, email, first_name)
        SELECT 1, 1, 'g' || i || '@example.test', 'G' || i FROM generate_series(1, 3) i;
        INSERT INTO leads (sequence_id, sender_id, email, first_name)
        VALUES (1, 2, 'c1@example.test', 'C1');
    """)
    old_sends = [
        r["at"]
        for r in await pool.fetch("SELECT at FROM sender_sends WHERE sender_id = 2 ORDER BY at")
    ]
    capped_until = old_sends[0] + timedelta(hours=1)
    env = daemon_env(
        database,
        amqp_prefix,
        smtp.port,
        UNSUBSCRIBE_MAILTO="unsubscribe@acme.test",
        UNSUBSCRIBE_URL="https://acme.test/u",
        UNSUBSCRIBE_SECRET=SECRET,
    )
    daemons = Daemons(env, tmp_path)
    for module, replicas in (("scheduler", 2), ("pump", 1), ("worker", 2)):
        for i in range(replicas):
            daemons.start(module, i)
    try:
        await wait_for(
            lambda: pool.fetchval("SELECT bool_and(status = 'completed') FROM leads"),
            timeout=60,
            interval=0.2,
        )
    finally:
        codes = daemons.stop_all()
    assert all(c == 0 for c in codes.values()), (codes, daemons.logs()[-3000:])

    by_sender: dict[str, list[float]] = defaultdict(list)
    by_rcpt = defaultdict(list)
    for r in smtp.received:
        by_sender[r.mail_from].append(r.at)
        by_rcpt[r.rcpt_to[0]].append(r)
    assert len(smtp.received) == 12  # 4 leads x 3 steps, each once
    assert len({r.message["Message-ID"] for r in smtp.received}) == 12

    # Pacing measured at the server: 9 sends of gap@ at least GAP apart (jitter on top).
    gaps = [b - a for a, b in itertools.pairwise(sorted(by_sender["gap@acme.test"]))]
    booked = [
        r["at"]
        for r in await pool.fetch("SELECT at FROM sender_sends WHERE sender_id = 1 ORDER BY at")
    ]
    ledger = [(b - a).total_seconds() for a, b in itertools.pairwise(booked)]
    print(f"gap@: {len(gaps) + 1} sends, gaps min {min(gaps):.3f} s, max {max(gaps):.3f} s")
    assert min(ledger) >= GAP, ledger
    assert min(gaps) >= GAP - TOLERANCE, gaps
    assert max(gaps) <= GAP + JITTER + 1.0, gaps  # paced, not stalled
    # Each send of the capped sender waited for one old send to leave the rolling hour: in
    # its booking, exactly; at the server, within what the worker's wait (on the monotonic
    # clock) and the server's wall clock can differ by while the system clock is slewed.
    cap_booked = await pool.fetch("SELECT at FROM sender_sends WHERE sender_id = 2 ORDER BY at")
    cap_sends = sorted(by_sender["cap@acme.test"])
    assert len(cap_sends) == 3
    for booking, sent, old in zip(cap_booked[3:], cap_sends, old_sends, strict=True):
        assert booking["at"] >= old + timedelta(hours=1)
        assert sent >= (old + timedelta(hours=1)).timestamp() - TOLERANCE
    # ...and the lead was deferred to exactly that moment, with the reason.
    until = await pool.fetchval(
        "SELECT (data->>'until')::timestamptz FROM events"
        " WHERE type = 'deferred' AND data->>'reason' = 'pacing' AND lead_id = 4 ORDER BY id LIMIT 1"
    )
    assert until == capped_until

    for rcpt, got in by_rcpt.items():
        msgs = [r.message for r in sorted(got, key=lambda r: r.at)]
        ids = [m["Message-ID"] for m in msgs]
        first_subject = msgs[0]["Subject"]
        # RFC 5322 3.6.4: a reply's In-Reply-To is the parent's Message-ID, its References the
        # parent's References followed by the parent's Message-ID.
        for k, m in enumerate(msgs[1:], start=1):
            assert m["Subject"] == f"Re: {first_subject}"
            assert m["In-Reply-To"] == ids[k - 1]
            assert m["References"].split() == ids[:k]
        for r in got:
            raw_headers = r.data.split(b"\r\n\r\n", 1)[0].decode()
            line = str(r.message["List-Unsubscribe"])
            # A mailto and an https URL with a token for this lead (no address in it).
            assert re.fullmatch(r"<mailto:[^>]+>, <https://[^>]+>", line), line
            assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw_headers
            url = re.search(r"<(https://[^>]+)>", line)
            assert url is not None
            base, _, token = url.group(1).rpartition("/")  # UNSUBSCRIBE_URL/TOKEN
            assert base == "https://acme.test/u"
            assert rcpt not in token
            lead_id = verify_token(SECRET, token)
            assert await pool.fetchval("SELECT email FROM leads WHERE id = $1", lead_id) == rcpt
        plain = msgs[0].get_body(("plain",))
        assert plain is not None
        assert url is not None
        assert url.group(1) in plain.get_content()
