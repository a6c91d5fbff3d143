"""The inbox daemon's watcher against a real Dovecot: replies (threaded to a message we
sent), automatic replies, hard and soft bounces, complaints and unsubscribe replies
are each acted on once, even when the watcher starts again; nothing is deleted or marked
read; IDLE wakes it within a second, and polling works where IDLE is off."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from core.clock import utcnow
from db import inbox as db_inbox
from inbox.loop import Inbox, Source, Watcher
from ops import senders
from runtime.credentials import Box
from runtime.settings import InboxSettings
from tests.conftest import wait_for
from tests.imap_server import Dovecot
from tests.mail import message

KEY = "credentials-key-of-the-tests-0123456789"
SETUP = """
    INSERT INTO senders (email) VALUES ('ana@acme.test');
    INSERT INTO sequences (name) VALUES ('S');
    INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
    VALUES (1, 1, 0, 'Hi', 'one'), (1, 2, 86400, NULL, 'two');
    INSERT INTO leads (sequence_id, sender_id, email, status, current_step)
    SELECT 1, 1, x, 'active', 2 FROM unnest(ARRAY['rep@example.test', 'auto@example.test',
        'hard@example.test', 'soft@example.test', 'abuse@example.test', 'unsub@example.test',
        'pair@example.test']) x;
    INSERT INTO deliveries (lead_id, step, sender_id, message_id, subject, status, sent_at)
    SELECT id, 1, 1, '<m' || id || '@acme.test>', 'Hi', 'sent', now() FROM leads;
"""


def _mail(frm: str, subject: str, body: str, **headers: str) -> bytes:
    return message(frm, subject, body, to="ana@acme.test", **headers)


def _dsn(rcpt: str, status: str, diagnostic: str, original: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.test\r\nTo: ana@acme.test\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: ana@acme.test\r\nTo: {rcpt}\r\nMessage-ID: {original}\r\n\r\n--b--\r\n"
    ).encode()


def _arf(rcpt: str, original: str) -> bytes:
    return (
        "From: fbl@isp.example.test\r\nTo: ana@acme.test\r\nSubject: complaint\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report;"
        ' boundary="f"\r\n\r\n--f\r\nContent-Type: text/plain\r\n\r\nAbuse report\r\n'
        "--f\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        f"Version: 1\r\nOriginal-Rcpt-To: {rcpt}\r\n\r\n--f\r\nContent-Type: message/rfc822\r\n\r\n"
        f"From: ana@acme.test\r\nTo: {rcpt}\r\nMessage-ID: {original}\r\n\r\nHi\r\n--f--\r\n"
    ).encode()


@pytest.fixture
async def mailbox(pool: asyncpg.Pool, dovecot: Dovecot) -> str:
    """ana@acme.test's inbox on Dovecot, set on the sender like an operator would."""
    user = f"ana-{uuid.uuid4().hex[:8]}@acme.test"
    dovecot.add_user(user, "imap-secret")
    await pool.execute(SETUP)
    async with pool.acquire() as conn:
        await senders.set_accounts(
            conn, "ana@acme.test", imap_url=f"imap://{user.replace('@', '%40')}@127.0.0.1:{dovecot.port}",
            imap_password="imap-secret", box=Box(KEY), actor="test", now=utcnow(),
        )  # fmt: skip
    return user


async def _watch(
    pool: asyncpg.Pool, database: str, **settings: object
) -> tuple[Watcher, asyncio.Task[None], asyncio.Event]:
    s = InboxSettings.model_validate(
        {"database_url": database, "credentials_key": KEY, "inbox_poll_seconds": 0.3, **settings}
    )
    (source,) = await Inbox(pool, s).sources()
    assert isinstance(source, Source)
    watcher = Watcher(source, pool, s)
    stop = asyncio.Event()
    return watcher, asyncio.create_task(watcher.run(stop)), stop


async def _status(pool: asyncpg.Pool) -> dict[str, str]:
    return {r["email"]: r["status"] for r in await pool.fetch("SELECT email, status FROM leads")}


async def test_every_kind_is_acted_on_once(
    pool: asyncpg.Pool, database: str, dovecot: Dovecot, mailbox: str
) -> None:
    ids = {r["email"]: r["message_id"] for r in await pool.fetch(
        "SELECT l.email, d.message_id FROM leads l JOIN deliveries d ON d.lead_id = l.id")}  # fmt: skip
    arriving = [
        _mail("Rep <rep@example.test>", "Re: Hi", "Sounds good, call me.\r\n\r\n> one",
              In_Reply_To=ids["rep@example.test"], References=ids["rep@example.test"]),
        _mail("auto@example.test", "Automatic reply: Hi", "I am away.",
              Auto_Submitted="auto-replied", In_Reply_To=ids["auto@example.test"]),
        _dsn("hard@example.test", "5.1.1", "550 5.1.1 <hard@example.test>: User unknown",
             ids["hard@example.test"]),
        _dsn("soft@example.test", "4.2.2", "452 4.2.2 Mailbox full", ids["soft@example.test"]),
        _arf("abuse@example.test", ids["abuse@example.test"]),
        _mail("unsub@example.test", "Re: Hi", "Please remove me from this list.",
              In_Reply_To=ids["unsub@example.test"]),
        # No thread headers: from the lead's address, but it refers to nothing we sent.
        _mail("pair@example.test", "question", "Is this still open?"),
    ]  # fmt: skip
    for raw in arriving:
        dovecot.deliver(mailbox, raw)
    watcher, task, stop = await _watch(pool, database, inbox_idle=False)
    try:
        await wait_for(lambda: watcher.acted == len(arriving), timeout=20)
    finally:
        stop.set()
        await task
    status = await _status(pool)
    assert status == {
        "rep@example.test": "stopped", "auto@example.test": "active",
        "hard@example.test": "failed", "soft@example.test": "active",
        "abuse@example.test": "stopped", "unsub@example.test": "stopped",
        "pair@example.test": "active",
    }  # fmt: skip
    suppressed = {r["email"]: r["reason"] for r in await pool.fetch("SELECT * FROM suppressions")}
    assert suppressed == {"hard@example.test": "bounce", "abuse@example.test": "complaint",
                          "unsub@example.test": "unsubscribed"}  # fmt: skip
    kinds = [r["type"] for r in await pool.fetch("SELECT type FROM events ORDER BY id")]
    for kind in ("reply_received", "auto_replied", "failed", "soft_bounced", "complained",
                 "reply_unmatched"):  # fmt: skip
        assert kind in kinds, kinds

    # Started again (a restart, a kill -9): nothing is acted on twice.
    before = await pool.fetchval("SELECT count(*) FROM events")
    watcher, task, stop = await _watch(pool, database, inbox_idle=False)
    await asyncio.sleep(1.5)
    stop.set()
    await task
    assert watcher.acted == 0
    assert await pool.fetchval("SELECT count(*) FROM events") == before
    # Nothing deleted, nothing marked read.
    assert dovecot.count(mailbox) == len(arriving)
    client = dovecot.imap(mailbox)
    try:
        client.select("INBOX", readonly=True)
        assert client.search(None, "UNSEEN")[1][0].split().__len__() == len(arriving)
    finally:
        client.logout()


@pytest.mark.parametrize("idle", [True, False])
async def test_a_new_reply_stops_its_lead_within_seconds(
    pool: asyncpg.Pool, database: str, dovecot: Dovecot, mailbox: str, idle: bool
) -> None:
    _, task, stop = await _watch(pool, database, inbox_idle=idle)
    try:
        await asyncio.sleep(1)  # watching (idling, or between polls)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        message_id = await pool.fetchval(
            "SELECT message_id FROM deliveries d JOIN leads l ON l.id = d.lead_id"
            " WHERE l.email = 'rep@example.test'"
        )
        dovecot.deliver(
            mailbox, _mail("rep@example.test", "Re: Hi", "Yes!", In_Reply_To=message_id)
        )

        async def stopped() -> bool:
            return (await _status(pool))["rep@example.test"] == "stopped"

        await wait_for(stopped, timeout=10, interval=0.05)
        took = loop.time() - sent
    finally:
        stop.set()
        await task
    assert took < (1.5 if idle else 3.0), took


async def test_a_message_the_database_refuses_is_passed_over(
    pool: asyncpg.Pool, database: str, dovecot: Dovecot, mailbox: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    real = db_inbox.act

    async def refusing(conn: object, got: object, box: object, **kw: object) -> list[str]:
        if kw["uid"] == 1:
            raise asyncpg.DataError("a value the database cannot store")
        return await real(conn, got, box, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(db_inbox, "act", refusing)
    message_id = await pool.fetchval(
        "SELECT message_id FROM deliveries d JOIN leads l ON l.id = d.lead_id"
        " WHERE l.email = 'rep@example.test'"
    )
    dovecot.deliver(mailbox, _mail("x@example.test", "Re: Hi", "first", In_Reply_To=message_id))
    dovecot.deliver(mailbox, _mail("rep@example.test", "Re: Hi", "Yes!", In_Reply_To=message_id))
    watcher, task, stop = await _watch(pool, database, inbox_idle=False)
    try:
        await wait_for(lambda: watcher.acted == 2, timeout=15)
    finally:
        stop.set()
        await task
    assert (await _status(pool))["rep@example.test"] == "stopped"
    assert await pool.fetchval("SELECT count(*) FROM events WHERE type = 'reply_received'") == 1


async def test_starttls_upgrades_the_connection_and_checks_the_certificate(
    pool: asyncpg.Pool, database: str, dovecot: Dovecot, mailbox: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    url = f"imap+starttls://{mailbox.replace('@', '%40')}@127.0.0.1:{dovecot.port}"
    async with pool.acquire() as conn:
        await senders.set_accounts(conn, "ana@acme.test", imap_url=url, imap_password="imap-secret",
                                   box=Box(KEY), actor="test", now=utcnow())  # fmt: skip
    message_id = await pool.fetchval(
        "SELECT message_id FROM deliveries d JOIN leads l ON l.id = d.lead_id"
        " WHERE l.email = 'rep@example.test'"
    )
    dovecot.deliver(mailbox, _mail("rep@example.test", "Re: Hi", "Yes!", In_Reply_To=message_id))

    # A certificate nobody vouches for: no session, nothing acted on.
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.dir / "passwd"))
    watcher, task, stop = await _watch(pool, database)
    await asyncio.sleep(1.5)
    stop.set()
    await task
    assert watcher.acted == 0
    assert (await _status(pool))["rep@example.test"] != "stopped"

    # The server's certificate trusted: the reply is read over TLS.
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.cert))
    watcher, task, stop = await _watch(pool, database)
    try:

        async def stopped() -> bool:
            return (await _status(pool))["rep@example.test"] == "stopped"

        await wait_for(stopped, timeout=10, interval=0.05)
        assert watcher.client is not None
        assert watcher.client.protocol.transport.get_extra_info("ssl_object") is not None
    finally:
        stop.set()
        await task


async def test_soft_bounces_of_one_address_add_up_to_a_suppression(
    pool: asyncpg.Pool, database: str, dovecot: Dovecot, mailbox: str
) -> None:
    """A mailbox that stays full is not mailed for ever: the SOFT_BOUNCE_LIMITth soft bounce
    of an address within SOFT_BOUNCE_DAYS suppresses it (and stops its leads)."""
    message_id = await pool.fetchval(
        "SELECT message_id FROM deliveries d JOIN leads l ON l.id = d.lead_id"
        " WHERE l.email = 'soft@example.test'"
    )
    for _ in range(3):
        dovecot.deliver(mailbox, _dsn("soft@example.test", "5.2.2",
                                      "552 5.2.2 <soft@example.test>: Mailbox full", message_id))  # fmt: skip
    watcher, task, stop = await _watch(pool, database, inbox_idle=False, soft_bounce_limit=3)
    try:
        await wait_for(lambda: watcher.acted == 3, timeout=20)
    finally:
        stop.set()
        await task
    assert await pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'soft_bounced'"
    ) == 3  # fmt: skip
    suppressed = await pool.fetch("SELECT email, reason FROM suppressions")
    assert [tuple(r) for r in suppressed] == [("soft@example.test", "soft_bounce_limit")]
    assert (await _status(pool))["soft@example.test"] == "stopped"
