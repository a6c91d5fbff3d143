"""The references: the SMTP client's ceiling and CPU floor, and the message builder against
the standard library's."""

from __future__ import annotations

import asyncio
import email.policy
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from core import dkim, message


async def ceiling(port: int, n: int = 20_000, conns: int = 8) -> dict[str, float]:
    body = (
        b"From: a@acme.test\r\nTo: b@example.test\r\nSubject: x\r\n\r\n" + b"x" * 76 + b"\r\n"
    ) * 25

    async def one(k: int) -> None:
        c = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await c.connect()
        for _ in range(k):
            await c.sendmail("a@acme.test", ["b@example.test"], body)
        await c.quit()

    sent = n // conns * conns
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(n // conns) for _ in range(conns)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"ceiling_emails_per_s": sent / wall, "client_cpu_ms_per_email": cpu * 1000 / sent}


def build_speed(n: int = 5_000) -> dict[str, float]:
    now = datetime.now(UTC)
    text = "Body for Ana María. " * 60
    refs = ["<a.1@acme.test>", "<a.2@acme.test>"]

    def ours() -> bytes:
        return message.build(
            message.Email(
                from_address="ana@acme.test",
                from_name="Ana Pérez",
                to_address="lead@example.test",
                subject="Re: Hello Ana María",
                text=text,
                html=None,
                message_id="<a.3@acme.test>",
                date=now,
                in_reply_to=refs[-1],
                references=refs,
                extra_headers=[("List-Unsubscribe", "<mailto:u@acme.test>")],
            )
        )

    def stdlib() -> bytes:
        m = EmailMessage(policy=email.policy.SMTP)
        m["From"] = "Ana Pérez <ana@acme.test>"
        m["To"] = "lead@example.test"
        m["Subject"] = "Re: Hello Ana María"
        m["Message-ID"] = "<a.3@acme.test>"
        m["Date"] = now
        m["In-Reply-To"] = refs[-1]
        m["References"] = " ".join(refs)
        m["List-Unsubscribe"] = "<mailto:u@acme.test>"
        m.set_content(text)
        return m.as_bytes()

    def rate(fn: Any) -> float:
        fn()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return n / (time.perf_counter() - t)

    a, b = rate(ours), rate(stdlib)
    built = ours()
    rsa_key = dkim.Key(
        "acme.test", "s1", rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    ed_key = dkim.Key("acme.test", "s2", ed25519.Ed25519PrivateKey.generate())
    cpu = {}
    for name, key in (("rsa2048", rsa_key), ("ed25519", ed_key)):
        t = time.process_time()
        for _ in range(n // 5):
            dkim.sign(built, key, 1_800_000_000)
        cpu[f"dkim_{name}_cpu_ms_per_signature"] = (time.process_time() - t) * 1000 / (n // 5)
    t = time.process_time()
    for _ in range(n // 5):
        ours()
    cpu["builder_cpu_ms_per_message"] = (time.process_time() - t) * 1000 / (n // 5)
    return {"builder_per_s": a, "email_message_per_s": b, "builder_speedup": a / b, **cpu}
