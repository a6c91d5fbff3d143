"""End to end, with the four daemons as processes, a real SMTP server and a real Dovecot: a
sequence sends step 1; the lead replies as a mail client would (In-Reply-To and References
of the message it received) into the sender's IMAP inbox; the lead is stopped (`replied`)
within seconds, and step 2 is never sent."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import wait_for
from tests.e2e.daemons import lead_is, start_with_inbox
from tests.imap_server import Dovecot
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.e2e


async def test_a_reply_in_the_senders_inbox_stops_the_sequence(  # noqa: PLR0917
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
        VALUES (1, 1, 0, 'Quick question, {{ first_name }}', 'Hi {{ first_name }}'),
               (1, 2, 8, NULL, 'Following up');
        INSERT INTO leads (sequence_id, sender_id, email, first_name)
        VALUES (1, 1, 'bob@example.test', 'Bob'), (1, 1, 'carol@example.test', 'Carol');
        """
    )
    daemons = await start_with_inbox(
        pool, database, amqp_prefix, smtp.port, (dovecot.port, user, "imap-pass"), tmp_path
    )
    try:
        await wait_for(lambda: len(smtp.received) == 2, timeout=30)
        first = next(r for r in smtp.received if r.rcpt_to == ["bob@example.test"]).message
        loop = asyncio.get_running_loop()
        replied_at = loop.time()
        # Bob's mail client answers in the thread.
        dovecot.deliver(user, (
            f"From: Bob <bob@example.test>\r\nTo: {first['From']}\r\n"
            f"Subject: Re: {first['Subject']}\r\nIn-Reply-To: {first['Message-ID']}\r\n"
            f"References: {first['Message-ID']}\r\nMessage-ID: <reply-1@example.test>\r\n"
            "\r\nSure, let's talk Tuesday.\r\n\r\n> Hi Bob\r\n"
        ).encode())  # fmt: skip

        await wait_for(lambda: lead_is(pool, "bob@example.test", "stopped"), timeout=15)
        took = loop.time() - replied_at
        # Carol, who did not reply, gets step 2; Bob never does.
        await wait_for(lambda: len(smtp.received) == 3, timeout=30)
        await asyncio.sleep(2)
    finally:
        codes = daemons.stop_all()
    assert all(c == 0 for c in codes.values()), daemons.logs()[-3000:]
    assert took < 5, took
    assert sorted(r.rcpt_to[0] for r in smtp.received) == [
        "bob@example.test", "carol@example.test", "carol@example.test",
    ]  # fmt: skip
    event = await pool.fetchrow(
        "SELECT e.data FROM events e JOIN leads l ON l.id = e.lead_id"
        " WHERE l.email = 'bob@example.test' AND e.type = 'stopped'"
    )
    assert event is not None
    assert "replied" in str(event["data"])


async def test_an_out_of_office_reply_moves_the_next_step_past_the_return(  # noqa: PLR0917
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer, dovecot: Dovecot,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Dave's server answers step 1 with an absence note (Auto-Submitted, "back on 14/12"),
    Erin answers herself that she is away with no date: neither lead is stopped; Dave's
    step 2 is due the day after the 14th, Erin's OOO_DEFAULT_DAYS (7) from now; the notes are
    in the inbound store with their intent and date."""
    user = f"sales-{uuid.uuid4().hex[:8]}@acme.test"
    dovecot.add_user(user, "imap-pass")
    await pool.execute(
        """
        INSERT INTO senders (email, name) VALUES ('sales@acme.test', 'Ana');
        INSERT INTO sequences (name) VALUES ('Cold');
        INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
        VALUES (1, 1, 0, 'Quick question', 'Hi'), (1, 2, 60, NULL, 'Following up');
        INSERT INTO leads (sequence_id, sender_id, email, first_name)
        VALUES (1, 1, 'dave@example.test', 'Dave'), (1, 1, 'erin@example.test', 'Erin');
        """
    )
    daemons = await start_with_inbox(
        pool, database, amqp_prefix, smtp.port, (dovecot.port, user, "imap-pass"), tmp_path
    )
    try:
        await wait_for(lambda: len(smtp.received) == 2, timeout=30)
        sent = {r.rcpt_to[0]: r.message for r in smtp.received}
        today = await pool.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")
        back = today + timedelta(days=9)
        for address, headers, text in (
            ("dave@example.test", "Auto-Submitted: auto-replied\r\n",
             f"I am out of the office, back on {back.day:02d}/{back.month:02d}."),
            ("erin@example.test", "", "I'm on vacation with limited access to email."),
        ):  # fmt: skip
            first = sent[address]
            dovecot.deliver(user, (
                f"From: <{address}>\r\nTo: {first['From']}\r\n{headers}"
                f"Subject: Re: {first['Subject']}\r\nIn-Reply-To: {first['Message-ID']}\r\n"
                f"Message-ID: <ooo-{address}>\r\n\r\n{text}\r\n"
            ).encode())  # fmt: skip
        await wait_for(
            lambda: pool.fetchval("SELECT count(*) = 2 FROM events WHERE type = 'rescheduled'"),
            timeout=20,
        )
    finally:
        codes = daemons.stop_all()
    assert all(c == 0 for c in codes.values()), daemons.logs()[-3000:]
    rows = {
        r["email"]: r
        for r in await pool.fetch(
            "SELECT l.email, l.status, l.next_run_at, i.intent, i.ooo_until, i.kind"
            " FROM leads l JOIN inbound_messages i ON i.lead_id = l.id"
        )
    }
    dave, erin = rows["dave@example.test"], rows["erin@example.test"]
    assert (dave["status"], dave["intent"], dave["kind"], dave["ooo_until"]) == (
        "active", "out_of_office", "auto_reply", back
    )  # fmt: skip
    assert dave["next_run_at"] == datetime.combine(back + timedelta(days=1), time(), tzinfo=UTC)
    assert (erin["status"], erin["intent"], erin["kind"], erin["ooo_until"]) == (
        "active", "out_of_office", "reply", None
    )  # fmt: skip
    wait = erin["next_run_at"] - datetime.now(UTC)
    assert timedelta(days=6, hours=23) < wait <= timedelta(days=7)
    assert len(smtp.received) == 2  # no step 2 yet, and no stop
