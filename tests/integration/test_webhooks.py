"""The webhook outbox in PostgreSQL and the deliverer against real HTTP servers: which
events make which webhook, in the events' own transaction; a host that resolves to a
private address refused when it is tried; a delivery given up on, listed and replayed under
its own webhook-id."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from core.clock import utcnow
from ops import stops, webhooks
from runtime.settings import WebhookSettings
from tests.conftest import wait_for
from tests.ports import free_port
from tests.webhook_receiver import Receiver
from webhooks.deliver import Deliverer

ALL = ["lead.sent", "lead.replied", "lead.bounced", "lead.unsubscribed", "lead.complained",
       "lead.completed", "lead.failed", "lead.stopped", "sender.paused"]  # fmt: skip


def _settings(database: str, **kw: object) -> WebhookSettings:
    return WebhookSettings.model_validate({"database_url": database, **kw})


async def _run(deliverer: Deliverer, until: object, timeout: float = 15) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(deliverer.run(stop))
    try:
        await wait_for(until, timeout=timeout)
    finally:
        stop.set()
        await task
        await deliverer.close()


async def test_events_become_webhooks_in_their_own_transaction(pool: asyncpg.Pool) -> None:
    await pool.execute(
        """
        INSERT INTO senders (email) VALUES ('s@acme.test');
        INSERT INTO sequences (name) VALUES ('S');
        INSERT INTO leads (sequence_id, sender_id, email) VALUES
            (1, 1, 'gone@x.test'), (1, 1, 'other@x.test');
        """
    )
    async with pool.acquire() as conn:
        added = await webhooks.add(
            conn, "https://hooks.example.com/in", ALL, "crm", allow_private=False, now=utcnow()
        )
        assert added.secret.startswith("whsec_")
        assert "secret" not in (await webhooks.endpoints(conn))[0]
        # A transaction that rolls back leaves no webhook behind.
        tx = conn.transaction()
        await tx.start()
        await stops.unsubscribe(conn, "other@x.test")
        assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries") == 1
        await tx.rollback()
        assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries") == 0
        await stops.unsubscribe(conn, "gone@x.test")
        await conn.fetchval("SELECT record_reply('other@x.test')")
    rows = await pool.fetch("SELECT event_type, payload FROM webhook_deliveries ORDER BY id")
    # The unsubscribe is lead.unsubscribed; a reply reported through the SQL interface is
    # not told back (its stop says `replied`).
    assert [r["event_type"] for r in rows] == ["lead.unsubscribed"]
    data = rows[0]["payload"]["data"]
    assert (data["email"], data["lead_id"], data["sender_id"], data["details"]) == (
        "gone@x.test", 1, 1, {"reason": "unsubscribed"}
    )  # fmt: skip


async def test_a_host_that_resolves_to_a_private_address_is_refused_when_tried(
    pool: asyncpg.Pool, database: str
) -> None:
    receiver = Receiver(free_port())
    async with pool.acquire() as conn:
        # A name, not an address: accepted at the door; what it resolves to is checked on
        # every connection.
        added = await webhooks.add(
            conn, f"https://localhost:{receiver.port}/in", ["lead.sent"],
            allow_private=False, now=utcnow(),
        )  # fmt: skip
        delivery = await webhooks.test(conn, added.id, utcnow())
    receiver.secret = added.secret
    receiver.start()
    try:
        deliverer = Deliverer(pool, _settings(database, webhook_poll_seconds=0.1))
        await _run(
            deliverer,
            lambda: pool.fetchval(
                "SELECT last_error FROM webhook_deliveries WHERE id = $1", delivery
            ),
        )
    finally:
        receiver.stop()
    error = await pool.fetchval("SELECT last_error FROM webhook_deliveries WHERE id = $1", delivery)
    assert "localhost resolves to" in error
    assert "not a public address" in error
    assert receiver.tries == {}


async def test_a_delivery_given_up_is_listed_and_replayed_under_its_own_id(
    pool: asyncpg.Pool, database: str
) -> None:
    receiver = Receiver(free_port())  # not listening yet
    async with pool.acquire() as conn:
        added = await webhooks.add(
            conn, f"http://127.0.0.1:{receiver.port}/in", ["lead.sent"],
            allow_private=True, now=utcnow(),
        )  # fmt: skip
        delivery = await webhooks.test(conn, added.id, utcnow())
    settings = _settings(
        database, webhook_allow_private=True, webhook_poll_seconds=0.1,
        webhook_retry_hours=0.0005, webhook_retry_first_seconds=0.2,
    )  # fmt: skip

    async def failed() -> bool:
        async with pool.acquire() as conn:
            return bool(await webhooks.deliveries(conn, added.id, "failed"))

    await _run(Deliverer(pool, settings), failed)
    async with pool.acquire() as conn:
        (row,) = await webhooks.deliveries(conn, added.id, "failed")
        assert row["id"] == delivery
        assert row["attempts"] >= 2
        assert "ConnectionRefusedError" in row["last_error"]
        receiver.secret = added.secret
        receiver.start()
        try:
            assert await webhooks.replay(conn, datetime.now(UTC), endpoint_id=added.id) == [
                delivery
            ]
            await _run(Deliverer(pool, settings), lambda: len(receiver.verified) == 1)
        finally:
            receiver.stop()
        (endpoint,) = await webhooks.endpoints(conn)
        assert await webhooks.deliveries(conn, added.id, None) == []  # delivered: gone
    assert receiver.verified[0].msg_id == f"msg_{delivery}"
    assert receiver.verified[0].payload["type"] == "webhook.test"
    assert endpoint["delivered_total"] == 1
    assert endpoint["last_delivered_at"] is not None


async def test_a_hanging_endpoint_holds_up_only_its_own_deliveries(
    pool: asyncpg.Pool, database: str
) -> None:
    """One endpoint accepts connections and never answers; another answers at once: the
    second gets all its deliveries while the first's are still hanging."""
    hung: list[asyncio.StreamWriter] = []

    async def never_answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        hung.append(w)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    slow_port = server.sockets[0].getsockname()[1]
    fast = Receiver(free_port())
    async with pool.acquire() as conn:
        slow_ep = await webhooks.add(
            conn, f"http://127.0.0.1:{slow_port}/in", ["lead.sent"], allow_private=True,
            now=utcnow(),
        )  # fmt: skip
        fast_ep = await webhooks.add(
            conn, f"http://127.0.0.1:{fast.port}/in", ["lead.sent"], allow_private=True,
            now=utcnow(),
        )  # fmt: skip
        # 100 events each, through the trigger, the slow endpoint's first.
        await conn.execute(
            "INSERT INTO events (type, data) SELECT 'sent', '{}' FROM generate_series(1, 100)"
        )
    fast.secret = fast_ep.secret
    fast.start()
    settings = _settings(
        database, webhook_allow_private=True, webhook_poll_seconds=0.1,
        webhook_timeout_seconds=30, webhook_endpoint_concurrency=4,
    )  # fmt: skip
    try:
        await _run(Deliverer(pool, settings), lambda: len(fast.verified) == 100, timeout=20)
    finally:
        fast.stop()
        for w in hung:
            w.close()
        server.close()
    slow_done = await pool.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status <> 'pending'",
        slow_ep.id,
    )
    assert slow_done == 0
    assert 1 <= len(hung) <= 4  # at most its concurrency in flight, the rest left waiting


async def test_each_event_is_one_webhook_type_or_none(pool: asyncpg.Pool) -> None:
    cases = [
        ("sent", {}, "lead.sent"),
        ("reply_received", {"unsubscribe": False}, "lead.replied"),
        ("complained", {}, "lead.complained"),
        ("completed", {}, "lead.completed"),
        ("sender_paused", {"rate": "hard_bounce_rate"}, "sender.paused"),
        ("failed", {"reason": "bounced"}, "lead.bounced"),
        ("failed", {"reason": "attempts_exhausted"}, "lead.failed"),
        ("stopped", {"reason": "unsubscribed"}, "lead.unsubscribed"),
        ("stopped", {"reason": "bounced"}, "lead.bounced"),
        ("stopped", {"reason": "replied"}, None),
        ("stopped", {"reason": "operator_stop"}, "lead.stopped"),
        ("queued", {}, None),
        ("auto_replied", {"intent": "out_of_office"}, None),
    ]
    for kind, data, expected in cases:
        got = await pool.fetchval("SELECT webhook_type($1, $2::jsonb)", kind, data)
        assert got == expected, (kind, data, got)
    # Every type the mapping gives is one an endpoint may subscribe to.
    assert {e for _, _, e in cases if e} == set(ALL)
