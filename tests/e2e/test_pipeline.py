"""End to end: three daemons as processes, leads loaded with the README's SQL, a real SMTP server.

Checks what arrived (count, order, spacing, rendering, no duplicates) and what the database
says (final states, events), including a suppressed lead, an unknown timezone, a broken
template, and a server that answers 451 and 550.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path

import asyncpg
import pytest

from core.clock import utcnow
from db.partitions import month_start
from tests.conftest import wait_for
from tests.e2e.daemons import Daemons, daemon_env
from tests.smtp_server import Received, SmtpServer

pytestmark = pytest.mark.e2e

N_LEADS = 30
WAITS = (0, 1, 2)


async def _exists(pool: asyncpg.Pool, table: str) -> bool:
    return bool(await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", table))


async def test_sequences_arrive_once_in_order_and_bad_leads_end_with_reasons(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer, tmp_path: Path
) -> None:
    smtp.handler.rules.data_failures["flaky@example.test"] = [
        "451 4.3.0 try again later",
        "451 4.3.0 try again later",
    ]
    smtp.handler.rules.rcpt["gone@example.test"] = "550 5.1.1 no such user"
    await pool.execute(f"""
        INSERT INTO senders (email, name, hourly_limit, daily_limit, min_gap_seconds, jitter_seconds)
        VALUES ('sales@acme.test', 'Ana from Acme', NULL, NULL, 0, 0);
        INSERT INTO sequences (name, timezone, send_days, send_from, send_until)
        VALUES ('Onboarding', 'Europe/Berlin', NULL, NULL, NULL),
               ('Broken', 'UTC', NULL, NULL, NULL);
        INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text, body_html)
        VALUES (1, 1, {WAITS[0]}, 'Hi {{{{ first_name }}}}', 'Hello {{{{ first_name }}}} at {{{{ company }}}} ({{{{ plan }}}})',
                '<p>Hello {{{{ first_name }}}}</p>'),
               (1, 2, {WAITS[1]}, NULL, 'Just following up, {{{{ first_name }}}}', NULL),
               (1, 3, {WAITS[2]}, 'Last note', 'Bye {{{{ first_name }}}}', NULL),
               (2, 1, 0, 'Hi {{{{ nickname }}}}', 'x', NULL);
        INSERT INTO leads (sequence_id, sender_id, email, first_name, last_name, company, timezone, attributes)
        SELECT 1, 1, 'lead' || i || '@example.test', 'Lead' || i, 'L', 'Co' || i,
               'America/New_York', jsonb_build_object('plan', 'pro')
        FROM generate_series(1, {N_LEADS}) AS i;
        INSERT INTO suppressions (email, reason) VALUES ('nope@example.test', 'manual'),
                                                        ('*@competitor.test', 'domain');
        INSERT INTO leads (sequence_id, sender_id, email, first_name, company, timezone, attributes) VALUES
            (1, 1, 'nope@example.test', 'Nope', 'X', NULL, '{{"plan": "p"}}'),
            (1, 1, 'ceo@competitor.test', 'Ceo', 'X', NULL, '{{"plan": "p"}}'),
            (1, 1, 'mars@example.test', 'Mars', 'X', 'Mars/Olympus', '{{"plan": "p"}}'),
            (2, 1, 'broken@example.test', 'Broken', 'X', NULL, '{{}}'),
            (1, 1, 'flaky@example.test', 'Flaky', 'X', NULL, '{{"plan": "p"}}'),
            (1, 1, 'gone@example.test', 'Gone', 'X', NULL, '{{"plan": "p"}}'),
            (1, 1, 'bad..dots@example.test', 'Bad', 'X', NULL, '{{"plan": "p"}}');
    """)
    env = daemon_env(
        database,
        amqp_prefix,
        smtp.port,
        SMTP_TLS="none",
        RETRY_BASE_SECONDS="0.3",
        RETRY_MAX_SECONDS="1",
        SEND_MAX_ATTEMPTS="4",
        SUMMARY_INTERVAL_SECONDS="1",
        WORKER_CONCURRENCY="8",
    )
    # A database whose months ahead were not all made (its pump was down): the pump makes
    # the missing one when it starts, and the run's events go to this month's partition.
    ahead = f"events_{month_start(utcnow(), 2):%Y_%m}"
    await pool.execute(f"DROP TABLE {ahead}; DELETE FROM event_partitions WHERE name = '{ahead}'")
    daemons = Daemons(env, tmp_path)
    for module in ("scheduler", "pump", "worker"):
        daemons.start(module)
    try:
        await wait_for(lambda: _all_terminal(pool), timeout=90, interval=0.2)
        await wait_for(lambda: _exists(pool, ahead), timeout=30, interval=0.2)
    finally:
        codes = daemons.stop_all()
    logs = daemons.logs()
    assert all(c == 0 for c in codes.values()), (codes, logs[-3000:])
    assert '"event":"event_partitions"' in logs.replace(" ", "")
    assert "event_partitions_failed" not in logs
    where = await pool.fetch("SELECT DISTINCT tableoid::regclass::text AS p FROM events")
    assert {r["p"] for r in where} <= {f"events_{month_start(utcnow(), m):%Y_%m}" for m in (-1, 0)}

    by_rcpt: dict[str, list[Received]] = defaultdict(list)
    for r in smtp.received:
        by_rcpt[r.rcpt_to[0]].append(r)
    ids = [r.message["Message-ID"] for r in smtp.received]
    assert len(ids) == len(set(ids)), "a step was sent twice"

    for i in range(1, N_LEADS + 1):
        got = by_rcpt[f"lead{i}@example.test"]
        assert [m.message["Subject"] for m in got] == [
            f"Hi Lead{i}",
            f"Re: Hi Lead{i}",
            "Last note",
        ]
        first, second, third = (m.message for m in got)
        plain = first.get_body(("plain",))
        assert plain is not None
        assert f"Hello Lead{i} at Co{i} (pro)" in plain.get_content()
        assert first.get_body(("html",)) is not None
        assert second["In-Reply-To"] == first["Message-ID"]
        assert second["References"] == first["Message-ID"]
        assert third["In-Reply-To"] is None  # a step with its own subject starts afresh
        assert first["From"] == "Ana from Acme <sales@acme.test>"
        for (a, b), wait in zip(itertools.pairwise(got), WAITS[1:], strict=True):
            assert b.at - a.at >= wait - 0.05, "a follow-up came before its wait"

    assert len(by_rcpt["flaky@example.test"]) == 3
    for addr in (
        "nope@example.test",
        "ceo@competitor.test",
        "mars@example.test",
        "broken@example.test",
        "gone@example.test",
        "bad..dots@example.test",
    ):
        assert addr not in by_rcpt

    states = {
        r["email"]: (r["status"], r["reason"])
        for r in await pool.fetch("""
        SELECT l.email, l.status,
               (SELECT e.data->>'reason' FROM events e WHERE e.lead_id = l.id
                  AND e.type IN ('stopped', 'failed') ORDER BY e.id DESC LIMIT 1) AS reason
        FROM leads l""")
    }
    assert states["nope@example.test"] == ("stopped", "suppressed")
    assert states["ceo@competitor.test"] == ("stopped", "suppressed")
    assert states["mars@example.test"] == ("failed", "invalid_timezone")
    assert states["broken@example.test"] == ("failed", "template_error")
    assert states["gone@example.test"] == ("failed", "bounced")
    assert states["bad..dots@example.test"] == ("failed", "invalid_email")
    assert states["flaky@example.test"] == ("completed", None)
    assert sum(1 for s, _ in states.values() if s == "completed") == N_LEADS + 1
    assert (
        await pool.fetchval("SELECT count(*) FROM suppressions WHERE email = 'gone@example.test'")
        == 1
    )
    flaky_attempts = await pool.fetchval("""SELECT attempts FROM deliveries d JOIN leads l ON l.id = d.lead_id
                                            WHERE l.email = 'flaky@example.test' AND d.step = 1""")
    assert flaky_attempts == 3
    assert await pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'sent'") == len(
        smtp.received
    )
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0

    # Structured logs: one JSON object per line with the contract's fields.
    lines = [json.loads(ln) for ln in logs.splitlines() if ln.startswith("{")]
    assert lines
    for ln in lines:
        assert {"timestamp", "level", "service", "event"} <= ln.keys()
    sent = [ln for ln in lines if ln["event"] == "lead_sent"]
    assert len(sent) == len(smtp.received)
    assert all(
        {"lead_id", "step", "outbox_id", "message_id", "duration_ms"} <= s.keys() for s in sent
    )
    assert {ln["service"] for ln in lines} == {"scheduler", "pump", "worker"}
    # Every line about a lead names its sequence and sender; one attempt field; a
    # Message-ID on a line is that line's own step's.
    lead_lines = [ln for ln in lines if str(ln["event"]).startswith("lead_")]
    assert len(lead_lines) > 3 * N_LEADS
    sent_ids = {(r["lead_id"], r["step"]): r["message_id"]
           for r in await pool.fetch("SELECT lead_id, step, message_id FROM deliveries")}  # fmt: skip
    for ln in lead_lines:
        assert ln["sequence_id"] in (1, 2), ln
        assert ln["sender_id"] == 1, ln
        assert "attempts" not in ln, ln
        if "message_id" in ln and (ln["lead_id"], ln["step"]) in sent_ids:
            assert ln["message_id"] == sent_ids[ln["lead_id"], ln["step"]], ln
    assert any(ln["event"] == "worker_summary" for ln in lines)
    assert any(
        ln["event"] == "lead_failed" and ln.get("reason") == "invalid_timezone" for ln in lines
    )


async def _all_terminal(pool: asyncpg.Pool) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM leads WHERE status NOT IN ('completed', 'stopped', 'failed')"
        )
        == 0
    )
