"""Erasure end to end: a person is mailed by the daemons, replies into the sender's inbox
(Dovecot), is told of to a webhook endpoint; `ops person erase` then leaves no table holding
their address, name, company or an attribute value (every text, jsonb and array column of
every table is scanned); erasing again finds nothing; the address imported again is stopped
before any send."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import AMQP_URL, wait_for
from tests.e2e.daemons import ROOT, lead_is, start_with_inbox
from tests.imap_server import Dovecot
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.e2e
PERSON = "Zeb.Quux@Example.test"
SECRETS = ["zeb.quux@example.test", "zebulon", "quuxley", "quuxcorp", "ultraviolet-tier"]


def _ops(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": database, "AMQP_URL": AMQP_URL}
    return subprocess.run(
        [sys.executable, "-m", "ops", *args], cwd=ROOT, capture_output=True, text=True,
        env=env, timeout=60, check=False,
    )  # fmt: skip


async def _holding(pool: asyncpg.Pool) -> list[str]:
    """Every column of every table that holds one of SECRETS: table.column (count)."""
    columns = await pool.fetch(
        """SELECT c.table_name, c.column_name FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
           WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
             AND (c.data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea')
                  OR c.data_type = 'ARRAY')"""
    )
    found = []
    for c in columns:
        n = await pool.fetchval(
            f'SELECT count(*) FROM "{c["table_name"]}" '
            f"WHERE lower(convert_from(convert_to(\"{c['column_name']}\"::text, 'UTF8'), "
            "'UTF8')) LIKE ANY($1::text[])",
            [f"%{s}%" for s in SECRETS],
        )
        if n:
            found.append(f"{c['table_name']}.{c['column_name']} ({n})")
    return found


async def test_an_erased_person_is_nowhere_and_never_mailed_again(  # noqa: PLR0917
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer, dovecot: Dovecot,
    tmp_path: Path,
) -> None:  # fmt: skip
    user = f"sales-{uuid.uuid4().hex[:8]}@acme.test"
    dovecot.add_user(user, "imap-pass")
    await pool.execute(
        """
        INSERT INTO senders (email, name) VALUES ('sales@acme.test', 'Ana');
        INSERT INTO sequences (name) VALUES ('Cold');
        INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
        VALUES (1, 1, 0, 'A question for {{ company }}, {{ first_name }}',
                'Hi {{ first_name }} {{ last_name }}, on the {{ plan }} plan?'),
               (1, 2, 86400, NULL, 'Following up');
        INSERT INTO webhook_endpoints (url, secret, event_types)
        VALUES ('https://crm.example.com/in', 'whsec_c2VjcmV0', '{lead.sent,lead.replied}');
        """
    )
    await pool.execute(
        "INSERT INTO leads (sequence_id, sender_id, email, first_name, last_name, company,"
        " attributes) VALUES (1, 1, $1, 'Zebulon', 'Quuxley', 'Quuxcorp',"
        " '{\"plan\": \"ultraviolet-tier\"}'), (1, 1, 'keep@example.test', 'Kim', NULL, NULL,"
        ' \'{"plan": "basic"}\')',
        PERSON,
    )
    daemons = await start_with_inbox(
        pool, database, amqp_prefix, smtp.port, (dovecot.port, user, "imap-pass"), tmp_path
    )
    try:
        await wait_for(lambda: len(smtp.received) == 2, timeout=30)
        first = next(r for r in smtp.received if r.rcpt_to == [PERSON]).message
        dovecot.deliver(user, (
            f"From: Zebulon Quuxley <{PERSON}>\r\nTo: {first['From']}\r\n"
            f"Subject: Re: {first['Subject']}\r\nIn-Reply-To: {first['Message-ID']}\r\n"
            "Message-ID: <zeb-1@example.test>\r\n\r\nZebulon here: yes, Quuxcorp is interested."
            "\r\n"
        ).encode())  # fmt: skip
        await wait_for(lambda: lead_is(pool, PERSON, "stopped"), timeout=20)
        await wait_for(lambda: pool.fetchval("SELECT count(*) = 1 FROM inbound_messages"), 20)
        assert await _holding(pool)  # before: the person is in several tables

        erased = _ops(database, "person", "erase", PERSON)
        assert erased.returncode == 0, erased.stderr
        assert "erased: 1 lead(s)" in erased.stdout
        assert await _holding(pool) == []
        again = _ops(database, "person", "erase", PERSON)
        assert "erased: 0 lead(s)" in again.stdout, again.stdout
        assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'erased'") == 2
        # The other lead is untouched.
        kept = await pool.fetchrow("SELECT first_name, attributes FROM leads WHERE id = 2")
        assert tuple(kept or ()) == ("Kim", {"plan": "basic"})

        # Imported again: stopped as suppressed, never sent.
        csv = tmp_path / "again.csv"
        csv.write_text(f"email,first_name,company,plan\n{PERSON},Zebulon,Quuxcorp,gold\n")
        imported = _ops(database, "import", str(csv), "--sequence", "Cold")
        assert imported.returncode == 0, imported.stderr
        await wait_for(
            lambda: pool.fetchval(
                "SELECT status = 'stopped' FROM leads WHERE lower(email) = $1", PERSON.lower()
            ),
            timeout=20,
        )
        await asyncio.sleep(1)
    finally:
        codes = daemons.stop_all()
    assert all(c == 0 for c in codes.values()), daemons.logs()[-3000:]
    assert [r.rcpt_to for r in smtp.received].count([PERSON]) == 1  # the first step only
    reason = await pool.fetchval(
        "SELECT e.data->>'reason' FROM events e JOIN leads l ON l.id = e.lead_id"
        " WHERE lower(l.email) = $1 AND e.type = 'stopped'",
        PERSON.lower(),
    )
    assert reason == "suppressed"
