"""The SMTP circuit against real servers: while the relay refuses connections, or answers
530 to every sender, the leads' messages wait (no attempt spent, none failed, one
`smtp_circuit_open` event); once it works, a probe closes the circuit and every lead is sent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from core.clock import utcnow
from db import deliveries
from ops import status
from tests.conftest import wait_for
from tests.integration.helpers import consuming, pipeline, settings_env
from tests.smtp_server import SmtpServer, _free_port

LEADS = 6


async def _run_until(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, port: int,
    *, done: Callable[[], Awaitable[bool]], timeout: float,
) -> None:  # fmt: skip
    env = settings_env(database, amqp_prefix, port, smtp_circuit_seconds=1, retry_base_seconds=1,
                       smtp_timeout_seconds=2, worker_concurrency=2)  # fmt: skip
    async with pipeline(pool, env) as p, consuming(p):

        async def turn() -> bool:
            await p.scheduler.run_once()
            await p.pump.run_once()
            return await done()

        await wait_for(turn, timeout=timeout, interval=0.2)


@pytest.mark.parametrize("outage", ["refused", "530"])
async def test_an_outage_spends_no_attempt_and_every_lead_is_sent_after(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, outage: str
) -> None:
    await pool.execute(
        f"""
        -- Paced (a cap it never reaches): every hand-off is booked in its ledger.
        INSERT INTO senders (email, hourly_limit) VALUES ('ana@acme.test', 1000);
        INSERT INTO sequences (name) VALUES ('S');
        INSERT INTO sequence_steps (sequence_id, position, subject, body_text)
        VALUES (1, 1, 'Hi', 'Hello');
        INSERT INTO leads (sequence_id, sender_id, email)
        SELECT 1, 1, 'l' || i || '@example.test' FROM generate_series(1, {LEADS}) i;
        """
    )
    port = _free_port()
    broken = None
    if outage == "530":
        broken = SmtpServer(port).start()
        broken.handler.rules.sender = "530 5.7.0 Authentication required"

    async def held() -> bool:
        n = await pool.fetchval(
            "SELECT count(*) FROM events WHERE type = 'deferred' AND data->>'reason' = 'smtp_circuit_open'"
        )
        return bool(n >= LEADS)

    await _run_until(pool, database, amqp_prefix, port, done=held, timeout=30)
    if broken is not None:
        broken.stop()
    assert await pool.fetchval("SELECT count(*) FROM leads WHERE status = 'failed'") == 0
    assert await pool.fetchval("SELECT coalesce(max(attempts), 0) FROM deliveries") == 0
    opened = await pool.fetch("SELECT data FROM events WHERE type = 'smtp_circuit_open'")
    assert len(opened) == 1
    circuit = await pool.fetchrow("SELECT state FROM smtp_circuits WHERE account = 'relay'")
    assert circuit is not None
    assert circuit["state"] == "open"

    server = SmtpServer(port).start()  # the relay is back
    try:

        async def all_sent() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT count(*) = $1 FROM deliveries WHERE status = 'sent'", LEADS
                )
            )

        await _run_until(pool, database, amqp_prefix, port, done=all_sent, timeout=40)
    finally:
        server.stop()
    assert sorted(r.rcpt_to[0] for r in server.received) == sorted(
        f"l{i}@example.test" for i in range(1, LEADS + 1)
    )
    assert await pool.fetchval("SELECT count(*) FROM leads WHERE status = 'failed'") == 0
    assert await pool.fetchval("SELECT max(attempts) FROM deliveries") == 1
    # Held messages gave their pacing bookings back: the ledger has one per message sent.
    assert await pool.fetchval("SELECT count(*) FROM sender_sends") == LEADS
    closed = await pool.fetchval("SELECT state FROM smtp_circuits WHERE account = 'relay'")
    assert closed == "closed"
    assert (
        await pool.fetchval("SELECT count(*) FROM events WHERE type = 'smtp_circuit_closed'") == 1
    )


async def test_status_shows_an_open_circuit(pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO senders (email) VALUES ('ana@acme.test'), ('bo@acme.test')")
    await pool.execute(
        "UPDATE senders SET smtp_url = 'smtps://bo@mail.example.test:465' WHERE id = 2"
    )
    now = utcnow()
    await deliveries.set_circuit(
        pool, "relay", state="open", reason="connection refused", retry_at=now, now=now,
        event="smtp_circuit_open",
    )  # fmt: skip
    async with pool.acquire() as conn:
        view = await status.read(conn, None, now)
    ana, bo = view.senders
    assert (ana.account, ana.circuit, ana.circuit_reason) == ("relay", "open", "connection refused")
    assert (bo.account, bo.circuit) == ("smtps://bo@mail.example.test:465", "closed")
