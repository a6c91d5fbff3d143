"""What comes back can be trusted (docs/architecture.md §7), end to end: the four daemons as processes, a
real SMTP server and the sender's inbox on a real Dovecot. Strangers write into the inbox
what an attacker would (forged DSN, ARF and SES reports naming patterns and addresses never
mailed, a report naming 4,000 recipients, a message nested 1,000 deep, an outside reply
with a real Message-ID, replies whose words look like an unsubscribe); then the leads
reply, unsubscribe, bounce and complain for real. Only the real ones change anything, the
daemons keep running, and `ops status` counts exactly what happened."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from core.clock import utcnow
from ops import senders
from runtime.credentials import Box
from tests.conftest import AMQP_URL, wait_for
from tests.e2e.daemons import CREDENTIALS_KEY, ROOT, Daemons, lead_is, start_with_inbox
from tests.hostile_mail import nested
from tests.imap_server import Dovecot
from tests.mail import message
from tests.ports import free_port
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.e2e
LEADS = ["bob", "carol", "dan", "erin", "frank", "gina"]


def _mail(frm: str, subject: str, body: str, **headers: str) -> bytes:
    return message(frm, subject, body, to="sales@acme.test", **headers)


def _reply(frm: str, original: EmailMessage, body: str) -> bytes:
    """A mail client's answer in the thread of `original`."""
    return _mail(frm, f"Re: {original['Subject']}", f"{body}\r\n\r\n> Hi",
                 In_Reply_To=original["Message-ID"], References=original["Message-ID"])  # fmt: skip


def _dsn(recipients: list[str], original_id: str | None = None) -> bytes:
    blocks = "".join(
        f"Final-Recipient: rfc822; {r}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{r}>: Recipient address rejected: User unknown\r\n\r\n"
        for r in recipients
    )
    returned = (
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: sales@acme.test\r\n"
        f"To: {recipients[0]}\r\nMessage-ID: {original_id}\r\n\r\n"
        if original_id
        else ""
    )
    return (
        "From: MAILER-DAEMON@mx.gmail.test\r\nTo: sales@acme.test\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.gmail.test\r\n"
        f"\r\n{blocks}{returned}--b--\r\n"
    ).encode()


def _arf(recipients: list[str], original_id: str) -> bytes:
    rcpts = "".join(f"Original-Rcpt-To: {r}\r\n" for r in recipients)
    return (
        "From: fbl@isp.example.test\r\nTo: sales@acme.test\r\nSubject: complaint\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report;"
        ' boundary="f"\r\n\r\n--f\r\nContent-Type: text/plain\r\n\r\nAbuse report\r\n'
        f"--f\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        f"Version: 1\r\n{rcpts}\r\n--f\r\nContent-Type: message/rfc822\r\n\r\n"
        f"From: sales@acme.test\r\nTo: {recipients[0]}\r\nMessage-ID: {original_id}\r\n\r\n"
        "Hi\r\n--f--\r\n"
    ).encode()


def _ses(recipients: list[str]) -> bytes:
    notification = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bouncedRecipients": [
                {
                    "emailAddress": r,
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
                for r in recipients
            ],
        },
        "mail": {"source": "sales@acme.test"},
    }
    envelope = {"Type": "Notification", "Message": json.dumps(notification)}
    return _mail("no-reply@sns.amazonaws.test", "AWS Notification Message", json.dumps(envelope))


def _ops(
    database: str, amqp_prefix: str, health: Path, *args: str, max_age: str = "60"
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": database, "AMQP_URL": AMQP_URL,
           "AMQP_PREFIX": amqp_prefix, "HEALTH_DIR": str(health),
           "HEALTH_MAX_AGE_SECONDS": max_age}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "ops", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


async def test_only_what_we_sent_and_what_the_lead_says_changes_anything(  # noqa: PLR0917
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
               (1, 2, 3600, NULL, 'Following up');
        INSERT INTO leads (sequence_id, sender_id, email, first_name)
        SELECT 1, 1, x || '@gmail.test', initcap(x) FROM unnest($1::text[]) x;
        -- Enrolled, not mailed yet: no report may act on it.
        INSERT INTO leads (sequence_id, sender_id, email, first_name, next_run_at)
        VALUES (1, 1, 'notyet@gmail.test', 'Nora', now() + interval '1 day');
        """.replace("$1::text[]", "ARRAY[" + ",".join(f"'{x}'" for x in LEADS) + "]")
    )
    daemons = await start_with_inbox(
        pool, database, amqp_prefix, smtp.port, (dovecot.port, user, "imap-pass"), tmp_path
    )
    health = tmp_path / "health"
    try:
        await wait_for(lambda: len(smtp.received) == len(LEADS), timeout=30)
        sent = {r.rcpt_to[0].split("@")[0]: r.message for r in smtp.received}
        strangers = [
            # A plain text from anyone with report fields naming a whole domain.
            _mail("anyone@evil.test", "hello",
                  "Final-Recipient: rfc822; *@gmail.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
                  "\r\nFinal-Recipient: rfc822; notyet@gmail.test\r\nAction: failed\r\n"
                  "Status: 5.1.1\r\n"),
            # Forged reports: patterns, an address never mailed, one never enrolled.
            _dsn(["*@gmail.test", "notyet@gmail.test", "someone@gmail.test"]),
            _arf(["*@gmail.test", "notyet@gmail.test"], "<forged@acme.test>"),
            _ses(["*@gmail.test", "notyet@gmail.test"]),
            # One report naming 4,000 recipients, ours among them only by pattern.
            _dsn([f"u{i}@gmail.test" for i in range(4000)] + ["*@gmail.test"]),
            # Nested 1,000 deep: unreadable, and it must not stop the mailbox.
            nested(1000),
            # An outsider who learnt Bob's Message-ID asks to remove him.
            _reply("mallory@evil.test", sent["bob"], "Please remove me from your list."),
            # Replies in words that look like an unsubscribe, from the leads themselves.
            _reply("carol@gmail.test", sent["carol"], "Stop by our office tomorrow at 3?"),
            _reply("gina@gmail.test", sent["gina"],
                   "Remove me from the CC list but yes, interested."),
        ]  # fmt: skip
        for raw in strangers:
            dovecot.deliver(user, raw)
        # Then the real thing: an unsubscribe, a hard bounce of our message, a complaint.
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        dovecot.deliver(
            user, _reply("dan@gmail.test", sent["dan"], "Please remove me from your list.")
        )
        await wait_for(
            lambda: lead_is(pool, "dan@gmail.test", "stopped"), timeout=15, interval=0.05
        )
        took = loop.time() - arrived
        dovecot.deliver(user, _dsn(["erin@gmail.test"], sent["erin"]["Message-ID"]))
        dovecot.deliver(user, _arf(["frank@gmail.test"], sent["frank"]["Message-ID"]))
        await wait_for(lambda: lead_is(pool, "frank@gmail.test", "stopped"), timeout=15)
        await wait_for(lambda: lead_is(pool, "erin@gmail.test", "failed"), timeout=15)
        # The inbox daemon is still healthy: every mailbox is being read.
        healthy = _ops(database, amqp_prefix, health, "health", "--service", "inbox")
        status = _ops(database, amqp_prefix, health, "status", "--json")
    finally:
        codes = daemons.stop_all()
    assert all(c == 0 for c in codes.values()), daemons.logs()[-3000:]
    print(f"\nreply behind the hostile mail: lead stopped {took:.2f} s after it arrived")
    assert took < 5, took
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr

    suppressed = {r["email"]: r["reason"] for r in await pool.fetch("SELECT * FROM suppressions")}
    assert suppressed == {"dan@gmail.test": "unsubscribed", "erin@gmail.test": "bounce",
                          "frank@gmail.test": "complaint"}  # fmt: skip
    leads = {r["email"].split("@")[0]: r["status"] for r in await pool.fetch("SELECT * FROM leads")}
    assert leads == {"bob": "active", "carol": "stopped", "dan": "stopped", "erin": "failed",
                     "frank": "stopped", "gina": "stopped", "notyet": "active"}  # fmt: skip
    reasons = {
        r["email"].split("@")[0]: r["reason"]
        for r in await pool.fetch(
            "SELECT l.email, e.data->>'reason' AS reason FROM events e JOIN leads l"
            " ON l.id = e.lead_id WHERE e.type IN ('stopped', 'failed')"
        )
    }
    assert reasons == {"carol": "replied", "gina": "replied", "dan": "unsubscribed",
                       "erin": "bounced", "frank": "complained"}  # fmt: skip
    kinds: dict[str, list[Any]] = {}
    for r in await pool.fetch("SELECT type, data FROM events WHERE type LIKE 'inbound_%'"
                              " OR type = 'reply_unmatched' ORDER BY id"):  # fmt: skip
        kinds.setdefault(r["type"], []).append(r["data"])
    assert len(kinds["inbound_unreadable"]) == 1
    assert "nested deeper" in kinds["inbound_unreadable"][0]["reason"]
    assert len(kinds["reply_unmatched"]) == 1
    assert kinds["reply_unmatched"][0]["from"] == "mallory@evil.test"
    ignored = kinds["inbound_ignored"]
    assert len(ignored) == 5, ignored  # the plain text, the DSN, the ARF, SES, the 4,000
    # Each names the pattern as refused, but the long one, read for its first 50 only.
    assert sum("*@gmail.test" in (i.get("not_one_address") or []) for i in ignored) == 4, ignored
    assert [i["not_read_count"] for i in ignored if i.get("not_read_count")] == [4001 - 50]

    # The counts tell the truth, as `ops status` prints them.
    assert status.returncode == 0, status.stderr
    (cold,) = json.loads(status.stdout)["sequences"]
    assert cold["last_24h"] == {"sent": len(LEADS), "replied": 2, "bounced": 1,
                                "unsubscribed": 1, "complained": 1, "failed": 0}  # fmt: skip


async def test_the_inbox_is_unhealthy_while_a_mailbox_is_not_being_read(
    pool: asyncpg.Pool, database: str, dovecot: Dovecot, tmp_path: Path
) -> None:
    """`ops health --service inbox` (what compose's health check calls) fails while any
    mailbox has not been read for HEALTH_MAX_AGE_SECONDS, and passes again once it is."""
    user = f"sales-{uuid.uuid4().hex[:8]}@acme.test"
    dovecot.add_user(user, "imap-pass")
    await pool.execute("INSERT INTO senders (email) VALUES ('sales@acme.test')")
    health = tmp_path / "health"

    async def point_at(port: int) -> None:
        async with pool.acquire() as conn:
            await senders.set_accounts(
                conn, "sales@acme.test", imap_url=f"imap://{user.replace('@', '%40')}@127.0.0.1:{port}",
                imap_password="imap-pass", box=Box(CREDENTIALS_KEY), actor="test", now=utcnow(),
            )  # fmt: skip

    def healthy() -> bool:
        return (
            _ops(database, "x", health, "health", "--service", "inbox", max_age="3").returncode == 0
        )

    await point_at(dovecot.port)
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": database, "CREDENTIALS_KEY": CREDENTIALS_KEY,
           "INBOX_REFRESH_SECONDS": "1", "HEALTH_DIR": str(health), "HEALTH_MAX_AGE_SECONDS": "3",
           "LOG_FORMAT": "json"}  # fmt: skip
    daemons = Daemons(env, tmp_path)
    daemons.start("inbox")
    try:
        await wait_for(lambda: asyncio.to_thread(healthy), timeout=20, interval=0.5)
        await point_at(free_port())  # nothing listens there: the mailbox cannot be read
        await wait_for(lambda: asyncio.to_thread(lambda: not healthy()), timeout=20, interval=0.5)
        verdict = _ops(database, "x", health, "health", "--service", "inbox", max_age="3")
        await point_at(dovecot.port)
        await wait_for(lambda: asyncio.to_thread(healthy), timeout=20, interval=0.5)
    finally:
        codes = daemons.stop_all()
    assert codes == {"inbox#0": 0}, daemons.logs()[-3000:]
    assert verdict.returncode == 1
    assert "unhealthy" in verdict.stdout
    assert "inbox_unavailable" in daemons.logs()
