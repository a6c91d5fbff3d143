"""Senders' own SMTP accounts: a message leaves through its sender's account (logged in as
that account) or, without one, through the relay; passwords are stored encrypted; a changed
password is used from the next connection, without a restart; a URL that would send a
password in clear is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from core.clock import utcnow
from ops import senders
from ops.definitions import Invalid
from runtime.credentials import Box, CredentialsError
from runtime.settings import WorkerSettings
from tests.conftest import wait_for
from tests.integration.helpers import consuming, pipeline, settings_env
from tests.smtp_server import SmtpServer
from worker.relays import Relays

KEY = "credentials-key-of-the-tests-0123456789"


@pytest.fixture
def servers() -> Iterator[tuple[SmtpServer, SmtpServer]]:
    relay = SmtpServer(logins={"relay": "relay-pass"}).start()
    own = SmtpServer(logins={"ana@acme.test": "old-pass"}).start()
    yield relay, own
    relay.stop()
    own.stop()


async def test_each_sender_sends_through_its_own_account(
    pool: asyncpg.Pool,
    database: str,
    amqp_prefix: str,
    servers: tuple[SmtpServer, SmtpServer],
    tmp_path: object,
) -> None:
    relay, own = servers
    await pool.execute(
        """
        INSERT INTO senders (email) VALUES ('ana@acme.test'), ('bo@acme.test');
        INSERT INTO sequences (name) VALUES ('S');
        INSERT INTO sequence_steps (sequence_id, position, subject, body_text)
        VALUES (1, 1, 'Hi', 'Hello');
        INSERT INTO leads (sequence_id, sender_id, email) VALUES
            (1, 1, 'l1@example.test'), (1, 2, 'l2@example.test');
        """
    )
    box = Box(KEY)
    async with pool.acquire() as db:
        changed = await senders.set_accounts(
            db, "ana@acme.test", smtp_url=f"smtp://ana%40acme.test@127.0.0.1:{own.port}",
            smtp_password="old-pass", box=box, actor="test", now=utcnow(),
        )  # fmt: skip
        assert changed == ["smtp_password", "smtp_url"]
        with pytest.raises(Invalid, match="in clear"):
            await senders.set_accounts(
                db, "bo@acme.test", smtp_url="smtp://bo@mail.example.test:25", box=box,
                actor="test", now=utcnow(),
            )  # fmt: skip
        with pytest.raises(Invalid, match="holds a password"):
            await senders.set_accounts(
                db, "bo@acme.test", smtp_url="smtps://bo:secret@mail.example.test", box=box,
                actor="test", now=utcnow(),
            )  # fmt: skip
    stored = await pool.fetchval("SELECT smtp_password FROM senders WHERE id = 1")
    assert b"old-pass" not in stored
    assert box.open(stored) == "old-pass"
    with pytest.raises(CredentialsError, match="different key"):
        Box("another-key-that-is-long-enough-0123456789").open(stored)

    env = settings_env(database, amqp_prefix, relay.port, smtp_username="relay",
                       smtp_password="relay-pass", credentials_key=KEY)  # fmt: skip
    relays: list[Relays] = []

    def routed(ws: WorkerSettings) -> Relays:
        relays.append(Relays(pool, ws, check_every=0.1))
        return relays[0]

    async with pipeline(pool, env, smtp=routed) as p, consuming(p):
        assert (await p.scheduler.run_once()).claimed == 2
        assert await p.pump.run_once() == 2
        await wait_for(lambda: len(relay.received) == 1 and len(own.received) == 1)
        assert [(r.rcpt_to, r.login) for r in own.received] == [
            (["l1@example.test"], "ana@acme.test")
        ]
        assert [(r.rcpt_to, r.login) for r in relay.received] == [(["l2@example.test"], "relay")]

        # The mailbox's password changes: set it, and the next message logs in with it.
        assert own.logins is not None
        own.logins["ana@acme.test"] = "new-pass"
        async with pool.acquire() as c:
            await senders.set_accounts(
                c, "ana@acme.test", smtp_password="new-pass", box=box, actor="test", now=utcnow()
            )
        await pool.execute(
            "INSERT INTO leads (sequence_id, sender_id, email) VALUES (1, 1, 'l3@example.test')"
        )
        await asyncio.sleep(0.2)
        assert (await p.scheduler.run_once()).claimed == 1
        assert await p.pump.run_once() == 1
        await wait_for(lambda: len(own.received) == 2)
        assert own.received[1].rcpt_to == ["l3@example.test"]
        assert own.failed_logins == 0
    await relays[0].close()
    event = await pool.fetchval(
        "SELECT data FROM events WHERE type = 'sender_changed' ORDER BY id DESC LIMIT 1"
    )
    assert "new-pass" not in str(event)
