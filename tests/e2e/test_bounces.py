"""End to end, with the four daemons as processes: the worker hands every message to a real
postfix, which answers 250 to all of them and relays them on; the next hop refuses two
recipients (an address that does not exist, a full mailbox). Postfix writes its bounces to
the sender, into the sender's mailbox on a real Dovecot, where the inbox daemon reads them:
the unknown address is suppressed and its lead failed (`bounced`) before its next step, the
full mailbox is a soft bounce (an event, no suppression), and everyone else goes on."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import wait_for
from tests.e2e.daemons import lead_is, start_with_inbox
from tests.imap_server import Dovecot
from tests.mta import Postfix
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.e2e
GONE, FULL, OK = "gone@example.test", "full@example.test", "ok@example.test"


async def test_bounces_from_a_real_postfix_suppress_and_fail_the_lead(  # noqa: PLR0917
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer, dovecot: Dovecot,
    tmp_path: Path,
) -> None:  # fmt: skip
    user = f"sales-{uuid.uuid4().hex[:8]}@acme.test"
    dovecot.add_user(user, "imap-pass")  # its Maildir now exists, owned by Dovecot's mail user
    smtp.handler.rules.rcpt[GONE] = (
        f"550 5.1.1 <{GONE}>: Recipient address rejected: User unknown in local recipient table"
    )
    smtp.handler.rules.rcpt[FULL] = f"552 5.2.2 <{FULL}>: Mailbox full"
    mta = Postfix(
        Path(tempfile.mkdtemp(prefix="es_postfix_")), relay_port=smtp.port,
        mailbox=("acme.test", dovecot.dir / "mail" / user),
    ).start()  # fmt: skip
    await pool.execute(
        f"""
        INSERT INTO senders (email, name) VALUES ('sales@acme.test', 'Ana');
        INSERT INTO sequences (name) VALUES ('Cold');
        INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
        VALUES (1, 1, 0, 'Quick question', 'Hi'), (1, 2, 15, NULL, 'Following up');
        INSERT INTO leads (sequence_id, sender_id, email)
        VALUES (1, 1, '{GONE}'), (1, 1, '{FULL}'), (1, 1, '{OK}');
        """
    )
    daemons = await start_with_inbox(
        pool, database, amqp_prefix, mta.port, (dovecot.port, user, "imap-pass"), tmp_path
    )
    try:
        await wait_for(lambda: lead_is(pool, GONE, "failed"), timeout=40)
        await wait_for(lambda: [r.rcpt_to for r in smtp.received] == [[OK], [OK]], timeout=40)
        await wait_for(lambda: lead_is(pool, FULL, "completed"), timeout=20)
    finally:
        codes = daemons.stop_all()
        maillog = mta.log()
        mta.stop()
    assert all(c == 0 for c in codes.values()), daemons.logs()[-3000:]
    # Postfix accepted every message: the worker recorded each as sent.
    assert "status=bounced" in maillog, maillog[-2000:]
    rows = await pool.fetch(
        "SELECT l.email, count(*) AS n FROM events e JOIN leads l ON l.id = e.lead_id"
        " WHERE e.type = 'sent' GROUP BY l.email"
    )
    sent = {r["email"]: r["n"] for r in rows}
    assert sent == {GONE: 1, FULL: 2, OK: 2}  # the unknown address never got step 2
    assert await pool.fetchval("SELECT reason FROM suppressions WHERE email = $1", GONE) == "bounce"
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 1
    failed = await pool.fetchrow(
        "SELECT e.data FROM events e JOIN leads l ON l.id = e.lead_id"
        " WHERE l.email = $1 AND e.type = 'failed'",
        GONE,
    )
    assert failed is not None
    assert "bounced" in str(failed["data"])
    assert "5.1.1" in str(failed["data"])
    soft = await pool.fetch(
        "SELECT e.data FROM events e JOIN leads l ON l.id = e.lead_id"
        " WHERE l.email = $1 AND e.type = 'soft_bounced'",
        FULL,
    )
    assert soft
    assert all("5.2.2" in str(r["data"]) for r in soft), soft
    # The bounces were postfix's own, delivered into the sender's mailbox (never deleted).
    assert dovecot.count(user) >= 2
