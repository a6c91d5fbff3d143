"""The worker against real services: poison messages, stops in flight, duplicates, ambiguity."""

from __future__ import annotations

import asyncio

import aio_pika
import asyncpg

from broker import dead_letters
from broker.topology import ROUTING_KEY, Names
from core.schemas import JobRef, SendJob
from tests.conftest import AMQP_URL, wait_for
from tests.integration.helpers import consuming, load_one_step, pipeline, settings_env
from tests.smtp_server import SmtpServer


async def test_poison_message_goes_to_dead_letters_with_event_and_can_be_replayed(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer
) -> None:
    await load_one_step(pool, "bob@example.test")
    async with pipeline(pool, settings_env(database, amqp_prefix, smtp.port)) as p:
        garbage = [b"not json", b'{"lead_id": 1}', b"\xff\xfe"]
        for i, body in enumerate(garbage):
            await p.topology.exchange.publish(
                aio_pika.Message(body, message_id=str(900 + i)), routing_key=ROUTING_KEY
            )
        await p.topology.exchange.publish(
            aio_pika.Message(b"{}", message_id="nope"), routing_key=ROUTING_KEY
        )
        async with consuming(p):
            # The good lead still goes through while garbage is rejected around it.
            await p.scheduler.run_once()
            await p.pump.run_once()
            await wait_for(lambda: len(smtp.received) == 1)
            await wait_for(lambda: _count(pool, "message_rejected", 4))
        rejected = {
            r["data"]["outbox_id"]: r
            for r in await pool.fetch(
                "SELECT lead_id, data FROM events WHERE type = 'message_rejected'"
            )
        }
        assert rejected["901"]["lead_id"] == 1  # the readable lead id is kept
        assert rejected["900"]["lead_id"] is None
        assert "Field required" in rejected["901"]["data"]["error"]
        assert "Invalid JSON" in rejected["902"]["data"]["error"]
        assert "message_id must be the outbox id" in rejected["nope"]["data"]["error"]
        names = Names.from_prefix(amqp_prefix)
        assert len(await dead_letters.replay(AMQP_URL, names, None, limit=2)) == 2
        assert len(await dead_letters.peek(AMQP_URL, names, 10)) == 2
        await wait_for(lambda: _has_count(p, 2))
    assert await pool.fetchval("SELECT status FROM leads") == "completed"


async def test_lead_stopped_while_in_broker_is_not_sent(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer
) -> None:
    await load_one_step(pool, "bob@example.test", "carol@example.test", "dan@other.test")
    async with pipeline(pool, settings_env(database, amqp_prefix, smtp.port)) as p:
        await p.scheduler.run_once()
        await p.pump.run_once()  # three messages sit in the queue now
        assert await pool.fetchval("SELECT record_reply('bob@example.test')") == 1
        assert await pool.fetchval("SELECT record_unsubscribe('carol@example.test')") == 1
        await pool.execute("INSERT INTO suppressions (email) VALUES ('*@OTHER.test')")
        async with consuming(p):
            await wait_for(lambda: _all_terminal(pool))
    assert smtp.received == []
    rows = await pool.fetch("""SELECT l.email, l.status, e.data->>'reason' AS reason FROM leads l
        JOIN events e ON e.lead_id = l.id AND e.type = 'stopped' ORDER BY l.id""")
    assert [tuple(r) for r in rows] == [
        ("bob@example.test", "stopped", "replied"),
        ("carol@example.test", "stopped", "unsubscribed"),
        ("dan@other.test", "stopped", "suppressed"),
    ]


async def test_duplicate_publish_sends_once_and_ambiguous_claim_is_not_resent(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer
) -> None:
    await load_one_step(pool, "bob@example.test", "amy@example.test")
    async with pipeline(pool, settings_env(database, amqp_prefix, smtp.port)) as p:
        await p.scheduler.run_once()
        await p.pump.run_once()
        # The pump died after the confirm and before its commit: every row goes out again.
        await pool.execute("UPDATE outbox SET published_at = NULL")
        # And a worker died mid-send for amy: its claim is stale.
        await pool.execute("""INSERT INTO deliveries (lead_id, step, message_id, status, attempts,
                                  claim_token, claimed_at, lease_until)
                              SELECT id, 1, '<x@y>', 'sending', 1, gen_random_uuid(),
                                     now() - interval '1 hour', now() - interval '1 minute'
                              FROM leads WHERE email = 'amy@example.test'""")
        await p.pump.run_once()
        async with consuming(p):
            await wait_for(lambda: _all_terminal(pool))
            await wait_for(lambda: _queue_empty(p))
    assert [r.rcpt_to for r in smtp.received] == [["bob@example.test"]]
    rows = {
        r["email"]: (r["status"], r["d"])
        for r in await pool.fetch(
            "SELECT l.email, l.status, d.status AS d FROM leads l JOIN deliveries d ON d.lead_id = l.id"
        )
    }
    assert rows == {
        "bob@example.test": ("completed", "sent"),
        "amy@example.test": ("completed", "unknown"),
    }
    assert await _count(pool, "send_ambiguous", 1)


async def _queue_count(p) -> int:  # type: ignore[no-untyped-def]
    ch = await p.connection.channel()
    q = await ch.declare_queue(p.topology.queue.name, passive=True)
    await ch.close()
    return int(q.declaration_result.message_count or 0)


async def _has_count(p, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await _queue_count(p) == n


async def _queue_empty(p) -> bool:  # type: ignore[no-untyped-def]
    return await _queue_count(p) == 0


async def _count(pool: asyncpg.Pool, event: str, n: int) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM events WHERE type = $1", event) == n)


async def _all_terminal(pool: asyncpg.Pool) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM leads WHERE status NOT IN ('completed','stopped','failed')"
        )
        == 0
    )


async def test_reply_lost_after_the_content_is_unknown_and_not_resent(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer
) -> None:
    """The server reads the whole message and drops the connection before its reply: it may
    have the message, so the delivery is `unknown` and no second copy is sent."""
    smtp.handler.rules.drop_after_data["bob@example.test"] = 1
    smtp.handler.rules.data_failures["carol@example.test"] = ["451 4.3.0 busy"]
    await load_one_step(pool, "bob@example.test", "carol@example.test")
    env = settings_env(database, amqp_prefix, smtp.port, retry_base_seconds=0.1)
    async with pipeline(pool, env) as p:
        await p.scheduler.run_once()
        await p.pump.run_once()
        async with consuming(p):
            await wait_for(lambda: pool.fetchval("SELECT count(*) = 2 FROM deliveries"))
            for _ in range(20):  # carol's retry comes back through the scheduler
                await p.scheduler.run_once()
                await p.pump.run_once()
                if await _all_terminal(pool):
                    break
                await asyncio.sleep(0.2)
            await wait_for(lambda: _all_terminal(pool))
    assert [r.rcpt_to for r in smtp.handler.dropped] == [["bob@example.test"]]
    assert [r.rcpt_to for r in smtp.received] == [["carol@example.test"]]  # retried: a reply came
    rows = await pool.fetch(
        "SELECT l.email, l.status, d.status AS delivery FROM leads l"
        " JOIN deliveries d ON d.lead_id = l.id ORDER BY l.id"
    )
    assert [tuple(r) for r in rows] == [
        ("bob@example.test", "completed", "unknown"),
        ("carol@example.test", "completed", "sent"),
    ]
    assert await pool.fetchval("SELECT count(*) FROM events WHERE type = 'send_ambiguous'") == 1


async def test_forged_and_altered_jobs_are_dead_lettered_and_never_reach_smtp(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer
) -> None:
    """Whoever can publish on the vhost cannot choose recipient, sender or text: the worker
    sends what the outbox row holds, and refuses a message the row does not bear out."""
    await load_one_step(pool, "bob@example.test", "amy@example.test")
    async with pipeline(pool, settings_env(database, amqp_prefix, smtp.port)) as p:
        await p.scheduler.run_once()  # outbox rows 1 (bob) and 2 (amy), not yet published
        real = SendJob.model_validate_json(
            await pool.fetchval("SELECT payload::text FROM outbox WHERE id = 1")
        )
        forged = real.model_copy(
            update={"to_address": "victim@elsewhere.test", "text": "buy now", "sender_id": 9}
        )
        bodies = {
            # bob's identity, another recipient and text, under bob's real outbox id
            "1": forged.model_dump_json().encode(),
            # a reference to a row that does not exist
            "777": JobRef(lead_id=1, step=1, attempt=1).body(),
            # a reference whose row is another lead's
            "2": JobRef(lead_id=1, step=1, attempt=1).body(),
            # ids that pass str.isdigit() but are no bigint
            "²": JobRef(lead_id=1, step=1, attempt=1).body(),
            "12345678901234567890": JobRef(lead_id=1, step=1, attempt=1).body(),
            # a field out of range
            "3": b'{"v":2,"lead_id":1,"step":1,"attempt":4294967296}',
        }
        for message_id, body in bodies.items():
            await p.topology.exchange.publish(
                aio_pika.Message(body, message_id=message_id), routing_key=ROUTING_KEY
            )
        await p.pump.run_once()  # the real references, behind the forgeries
        async with consuming(p):
            await wait_for(lambda: _all_terminal(pool))
            await wait_for(lambda: _count(pool, "message_rejected", len(bodies)))
    assert sorted(r.rcpt_to[0] for r in smtp.received) == ["amy@example.test", "bob@example.test"]
    bob = next(r for r in smtp.received if r.rcpt_to == ["bob@example.test"])
    assert bob.message["Message-ID"] == real.message_id
    errors = {
        r["outbox_id"]: r["error"]
        for r in await pool.fetch(
            "SELECT data->>'outbox_id' AS outbox_id, data->>'error' AS error FROM events"
            " WHERE type = 'message_rejected'"
        )
    }
    assert errors["1"] == "the job it carries differs from outbox row 1"
    assert errors["777"] == "no outbox row 777 (never written, or pruned)"
    assert errors["2"].startswith("names lead 1 step 1 attempt 1, but outbox row 2 is lead 2")
    assert errors["²"] == "message_id must be the outbox id, got '²'"
    assert errors["12345678901234567890"].startswith("message_id must be the outbox id")
    assert errors["3"].startswith("attempt: Input should be less than or equal to 2147483647")
    left = await dead_letters.peek(AMQP_URL, Names.from_prefix(amqp_prefix), 100)
    assert sorted(str(d.outbox_id) for d in left) == sorted(bodies)  # all dead-lettered
