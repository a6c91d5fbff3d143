"""The inbox daemon's watcher against a private Dovecot: classified messages per second
catching up on a full inbox (replies, auto-replies, bounces), and with IDLE the time from a
reply's delivery to its lead being stopped."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from bench.services import database
from core.clock import utcnow
from inbox import reading
from inbox.loop import Inbox, Watcher
from ops import senders
from runtime.credentials import Box
from runtime.settings import InboxSettings
from tests.hostile_mail import nested, report_naming
from tests.imap_server import Dovecot

KEY = "bench-credentials-key-0123456789-abcdef"


def _messages(n: int, ids: list[str]) -> list[bytes]:
    out = []
    for i in range(n):
        mid = ids[i % len(ids)]
        kind = i % 3
        if kind == 0:
            head = (
                f"From: lead{i % len(ids)}@example.test\r\nSubject: Re: Hi\r\n"
                f"In-Reply-To: {mid}\r\n"
            )
            body = "Thanks, tell me more.\r\n\r\n> Hi"
        elif kind == 1:
            head = (
                "From: x@example.test\r\nSubject: Out of Office\r\nAuto-Submitted: auto-replied\r\n"
            )
            body = "Away until Monday."
        else:
            head = ("From: MAILER-DAEMON@mx.example.test\r\nSubject: failure notice\r\n"
                    "Return-Path: <>\r\n")  # fmt: skip
            body = f"<lead{i}@example.test>:\r\n550 5.2.2 mailbox full\r\n"
        out.append(
            (
                head + f"To: ana@acme.test\r\nMessage-ID: <{uuid.uuid4().hex}@x>\r\n\r\n{body}\r\n"
            ).encode()
        )
    return out


async def hostile_reading() -> dict[str, Any]:
    """Seconds to read, in the inbox's reading child, a report naming 4,000 recipients and a
    message nested 1,000 deep (best of three, the child warm)."""
    await reading.start()
    out = {}
    for name, raw in (
        ("inbox_dsn_4000_recipients_s", report_naming(4000)),
        ("inbox_nested_1000_deep_s", nested(1000)),
    ):
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            await reading.read(raw, 2.0)
            best = min(best, time.perf_counter() - t)
        out[name] = best
    return out


async def inbox_speed(n: int = 3000, replies: int = 40) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="es_bench_dovecot_"))
    directory.chmod(0o755)
    server = Dovecot(directory).start()
    try:
        user = "ana@acme.test"
        server.add_user(user, "pw")
        async with database("es_bench_inbox") as dsn:
            conn = await asyncpg.connect(dsn)
            await conn.execute(
                """INSERT INTO senders (email) VALUES ('ana@acme.test');
                   INSERT INTO sequences (name) VALUES ('S');
                   INSERT INTO sequence_steps (sequence_id, position, subject, body_text)
                   VALUES (1, 1, 'Hi', 'x'), (1, 2, NULL, 'y');
                   INSERT INTO leads (sequence_id, sender_id, email, current_step)
                   SELECT 1, 1, 'lead' || i || '@example.test', 2 FROM generate_series(0, 999) i;
                   INSERT INTO deliveries (lead_id, step, sender_id, message_id, status, sent_at)
                   SELECT id, 1, 1, '<m' || id || '@acme.test>', 'sent', now() FROM leads;"""
            )
            await senders.set_accounts(
                conn, user, imap_url=f"imap://ana%40acme.test@127.0.0.1:{server.port}",
                imap_password="pw", box=Box(KEY), actor="bench", now=utcnow(),  # noqa: S106
            )  # fmt: skip
            ids = [
                r["message_id"]
                for r in await conn.fetch("SELECT message_id FROM deliveries ORDER BY id")
            ]
            client = server.imap(user)
            for raw in _messages(n, ids[:500]):
                client.append("INBOX", None, None, raw)
            client.logout()
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
            settings = InboxSettings.model_validate({"database_url": dsn, "credentials_key": KEY})
            (source,) = await Inbox(pool, settings).sources()
            watcher = Watcher(source, pool, settings)
            stop = asyncio.Event()
            t0 = time.perf_counter()
            task = asyncio.create_task(watcher.run(stop))
            while watcher.acted < n:
                await asyncio.sleep(0.05)
            catch_up = time.perf_counter() - t0
            # Replies one at a time while it idles: delivery to the lead stopped.
            lags = []
            for k in range(replies):
                lead = 600 + k
                mid = await conn.fetchval(
                    "SELECT message_id FROM deliveries WHERE lead_id = $1", lead + 1
                )
                t = time.perf_counter()
                reply = (
                    f"From: lead{lead}@example.test\r\nTo: ana@acme.test\r\n"
                    f"Subject: Re: Hi\r\nIn-Reply-To: {mid}\r\n\r\nYes\r\n"
                )
                server.deliver(user, reply.encode())
                while (
                    await conn.fetchval("SELECT status FROM leads WHERE id = $1", lead + 1)
                    != "stopped"
                ):
                    await asyncio.sleep(0.01)
                lags.append(time.perf_counter() - t)
            stop.set()
            await task
            await pool.close()
            await conn.close()
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    lags.sort()
    return await hostile_reading() | {
        "inbox_messages": n,
        "inbox_classified_per_s": n / catch_up,
        "inbox_reply_to_stop_p50_s": lags[len(lags) // 2],
        "inbox_reply_to_stop_p99_s": lags[min(len(lags) - 1, int(len(lags) * 0.99))],
    }
