"""The console's inbox in Chromium, with the daemons as processes, a real Dovecot for the
sender's inbox and a real SMTP server for the sender's own account: a lead's reply shows in
the inbox with its intent and its thread; an answer typed there (and its form sent twice)
arrives at the sender's account once, threaded under the reply; an absence note is listed
as out of office with its return date, its lead not stopped."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import asyncpg
from playwright.async_api import Browser, expect

from core.clock import utcnow
from ops import senders
from runtime.credentials import Box
from tests.browser.oidc import Provider
from tests.browser.test_console import (
    ALLOWED,
    _axe,
    _shot,
    _sign_in,
    _up,
    browser,
    sign_in_env,
)
from tests.conftest import wait_for
from tests.e2e.daemons import CREDENTIALS_KEY, Daemons, daemon_env, lead_is
from tests.imap_server import Dovecot
from tests.ports import free_port
from tests.smtp_server import SmtpServer

__all__ = ["browser"]

SETUP = """
    INSERT INTO senders (email, name) VALUES ('sales@acme.test', 'Ana');
    INSERT INTO sequences (name) VALUES ('Cold');
    INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
    VALUES (1, 1, 0, 'Quick question, {{ first_name }}', 'Hi {{ first_name }}, a question.'),
           (1, 2, 86400, NULL, 'Following up');
    INSERT INTO leads (sequence_id, sender_id, email, first_name)
    VALUES (1, 1, 'bob@example.test', 'Bob'), (1, 1, 'carol@example.test', 'Carol');
"""


async def test_a_reply_is_read_and_answered_in_the_console_inbox(  # noqa: PLR0917
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer, dovecot: Dovecot,
    browser: Browser, tmp_path: Path,
) -> None:  # fmt: skip
    user = f"sales-{uuid.uuid4().hex[:8]}@acme.test"
    dovecot.add_user(user, "imap-pass")
    own = SmtpServer(logins={"sales@acme.test": "smtp-pass"}).start()
    await pool.execute(SETUP)
    async with pool.acquire() as conn:
        await senders.set_accounts(
            conn, "sales@acme.test",
            smtp_url=f"smtp://sales%40acme.test@127.0.0.1:{own.port}", smtp_password="smtp-pass",
            imap_url=f"imap://{user.replace('@', '%40')}@127.0.0.1:{dovecot.port}",
            imap_password="imap-pass", box=Box(CREDENTIALS_KEY), actor="test", now=utcnow(),
        )  # fmt: skip
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    provider = Provider(free_port(), f"{base}/auth/callback", ALLOWED, tmp_path / "oidc.log")
    env = daemon_env(
        database, amqp_prefix, smtp.port, CREDENTIALS_KEY=CREDENTIALS_KEY,
        INBOX_REFRESH_SECONDS="1", HEALTH_DIR=str(tmp_path / "health"),
        API_HOST="127.0.0.1", API_PORT=str(port), **sign_in_env(provider, ALLOWED),
    )  # fmt: skip
    daemons = Daemons(env, tmp_path)
    for module in ("api", "scheduler", "pump", "worker", "inbox"):
        daemons.start(module)

    try:
        await wait_for(lambda: _up(base), timeout=30, interval=0.2)
        await wait_for(lambda: len(own.received) == 2, timeout=30)
        first = {r.rcpt_to[0]: r.message for r in own.received}
        bob, carol = first["bob@example.test"], first["carol@example.test"]
        dovecot.deliver(user, (
            f"From: Bob <bob@example.test>\r\nTo: {bob['From']}\r\n"
            f"Subject: Re: {bob['Subject']}\r\nIn-Reply-To: {bob['Message-ID']}\r\n"
            f"References: {bob['Message-ID']}\r\nMessage-ID: <bob-reply@example.test>\r\n"
            "\r\nSounds good, can we set up a call next week?\r\n\r\n> Hi Bob, a question.\r\n"
        ).encode())  # fmt: skip
        dovecot.deliver(user, (
            f"From: <carol@example.test>\r\nTo: {carol['From']}\r\nAuto-Submitted: auto-replied"
            f"\r\nSubject: Out of office\r\nIn-Reply-To: {carol['Message-ID']}\r\n"
            "Message-ID: <carol-ooo@example.test>\r\n\r\nI am out of the office until"
            " January 12.\r\n"
        ).encode())  # fmt: skip
        await wait_for(lambda: lead_is(pool, "bob@example.test", "stopped"), timeout=20)
        await wait_for(
            lambda: pool.fetchval("SELECT count(*) = 2 FROM inbound_messages"), timeout=20
        )

        context = await browser.new_context()
        page = await context.new_page()
        await _sign_in(page, base, ALLOWED)
        await page.get_by_role("link", name="Inbox").click()
        rows = page.locator("[data-reply]")
        await expect(rows).to_have_count(2)
        bob_row = page.locator("tr", has_text="bob@example.test")
        await expect(bob_row.locator("[data-intent]")).to_have_text("interested")
        carol_row = page.locator("tr", has_text="carol@example.test")
        await expect(carol_row.locator("[data-intent]")).to_contain_text("out of office")
        await expect(carol_row.locator("[data-intent]")).to_contain_text("back 2027-01-12")
        await _shot(page, "20-inbox")
        # axe-core needs its script on the page: a context that lets it in, same session.
        audit = await browser.new_context(
            bypass_csp=True, storage_state=await context.storage_state()
        )
        audit_page = await audit.new_page()
        await audit_page.goto(base + "/inbox")
        await _axe(audit_page, "inbox")
        await audit_page.goto(base + f"/inbox/{await _reply_id(pool, 'bob@example.test')}")
        await _axe(audit_page, "reply")
        await audit.close()
        await page.get_by_label("Intent").select_option("interested")
        await page.get_by_role("button", name="Show").click()
        await expect(rows).to_have_count(1)

        # The thread: our step 1, then Bob's reply; the answer goes from here.
        await bob_row.get_by_role("link").click()
        thread = page.locator("[data-thread]")
        await expect(thread).to_have_count(2)
        await expect(thread.nth(0)).to_contain_text("Step 1")
        await expect(thread.nth(1)).to_contain_text("can we set up a call")
        await _shot(page, "21-reply-thread")
        text = "Great, Bob. Tuesday at 10 works; I'll send an invite."
        await page.get_by_label(re.compile("^Answer from sales@acme.test")).fill(text)
        csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
        await page.get_by_role("button", name="Send the answer").click()
        await expect(page.get_by_role("status")).to_have_text("answer queued")
        # The same form again (a double click, a resent POST): no second answer.
        again = await page.request.post(
            f"{base}/inbox/{await _reply_id(pool, 'bob@example.test')}/answer",
            form={"csrf": str(csrf), "body_text": text},
        )
        assert again.ok
        assert "already answered" in await again.text()  # the page it was sent back to
        await page.reload()
        await expect(page.locator("main")).to_contain_text("Handled by")
        await wait_for(lambda: len(own.received) == 3, timeout=30)
        await _shot(page, "22-answered")
        await context.close()
    finally:
        codes = daemons.stop_all()
        provider.stop()
        own.stop()
    assert all(c == 0 for c in codes.values()), daemons.logs()[-3000:]
    answer = own.received[2]
    assert answer.rcpt_to == ["bob@example.test"]
    msg = answer.message
    assert msg["From"].endswith("<sales@acme.test>")
    assert msg["In-Reply-To"] == "<bob-reply@example.test>"
    assert msg["References"].split() == [bob["Message-ID"], "<bob-reply@example.test>"]
    assert msg["Subject"] == f"Re: {bob['Subject']}"
    assert text in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert smtp.received == []  # the relay: nothing; the sender's own account sent it all
    assert await pool.fetchval("SELECT count(*) FROM events WHERE type = 'operator_replied'") == 1
    assert await lead_is(pool, "carol@example.test", "active")


async def _reply_id(pool: asyncpg.Pool, sender: str) -> int:
    found: int = await pool.fetchval(
        "SELECT id FROM inbound_messages WHERE from_address = $1", sender
    )
    return found
