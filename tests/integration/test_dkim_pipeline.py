"""DKIM in the pipeline: the worker signs what it sends from a domain with a key in
DKIM_KEYS_DIR (RSA and Ed25519 domains side by side), the signature covers List-Id and the
one-click unsubscribe headers, and dkimpy verifies what the SMTP server received; a sender
of a domain without a key sends unsigned."""

from __future__ import annotations

import shutil
import smtplib
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from core import message
from core.dkim import load_key, load_keys
from core.dkim import sign as dkim_sign
from tests.conftest import wait_for
from tests.integration.helpers import consuming, pipeline, settings_env
from tests.mta import Postfix
from tests.smtp_server import SmtpServer
from worker.signing import Signer


def _pem(key: object) -> bytes:
    pem: bytes = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem


def _write(directory: Path, domain: str, selector: str, key: object) -> None:
    (directory / domain).mkdir(parents=True)
    pem = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / domain / f"{selector}.pem").write_bytes(pem)


async def test_messages_leave_signed_and_verify(
    pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer, tmp_path: Path
) -> None:
    keys_dir = tmp_path / "dkim"
    _write(
        keys_dir,
        "acme.test",
        "s2026",
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )
    _write(keys_dir, "beta.test", "ed1", ed25519.Ed25519PrivateKey.generate())
    await pool.execute(
        """
        INSERT INTO senders (email) VALUES ('ana@acme.test'), ('bo@beta.test'), ('cy@gamma.test');
        INSERT INTO sequences (name) VALUES ('Onboarding');
        INSERT INTO sequence_steps (sequence_id, position, subject, body_text)
        VALUES (1, 1, 'Hi {{ first_name }}', 'Hello {{ first_name }}');
        INSERT INTO leads (sequence_id, sender_id, email, first_name) VALUES
            (1, 1, 'l1@example.test', 'Lü'), (1, 2, 'l2@example.test', 'Bo'),
            (1, 3, 'l3@example.test', 'Cy');
        """
    )
    env = settings_env(
        database, amqp_prefix, smtp.port, dkim_keys_dir=str(keys_dir),
        unsubscribe_url="https://acme.test/u", unsubscribe_secret="k" * 40,
        unsubscribe_mailto="unsubscribe@acme.test",
    )  # fmt: skip
    async with pipeline(pool, env, signer=Signer(keys_dir)) as p, consuming(p):
        assert (await p.scheduler.run_once()).claimed == 3
        assert await p.pump.run_once() == 3
        await wait_for(lambda: len(smtp.received) == 3)

    keys = load_keys(keys_dir)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        selector, _, domain = name.decode().rstrip(".").partition("._domainkey.")
        key = keys[domain]
        assert key.selector == selector
        return key.dns_record().encode()

    by_rcpt = {r.rcpt_to[0]: r for r in smtp.received}
    for rcpt, algorithm in (
        ("l1@example.test", "rsa-sha256"),
        ("l2@example.test", "ed25519-sha256"),
    ):
        got = by_rcpt[rcpt]
        assert dkim.verify(got.data, dnsfunc=dns), rcpt
        signature = got.message["DKIM-Signature"]
        assert f"a={algorithm}" in signature
        signed = "".join(signature.split("h=")[1].split(";")[0].split()).split(":")
        assert {"list-id", "list-unsubscribe", "list-unsubscribe-post", "from"} <= set(signed)
        assert got.message["List-Id"] == f"<sequence-1.{got.mail_from.split('@')[1]}>"
    unsigned = by_rcpt["l3@example.test"]
    assert unsigned.message["DKIM-Signature"] is None
    assert unsigned.message["List-Id"] == "<sequence-1.gamma.test>"


async def test_signatures_survive_a_real_mta(smtp: SmtpServer) -> None:
    """A signed message relayed by postfix (it adds its Received header, queues and rewrites
    what it may) still verifies where it arrives, for both key types."""
    directory = Path(tempfile.mkdtemp(prefix="es_postfix_"))
    mta = Postfix(directory, relay_port=smtp.port).start()
    try:
        keys = {
            "rsa": load_key(
                "acme.test",
                "s1",
                _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            ),
            "ed25519": load_key("acme.test", "e1", _pem(ed25519.Ed25519PrivateKey.generate())),
        }
        for n, key in enumerate(keys.values()):
            raw = message.build(message.Email(
                from_address="ana@acme.test", from_name="Ana Álvarez", to_address=f"bob{n}@example.test",
                subject="Über den Plan", text="Hi Bob,\n\n  indented line \t\n.leading dot\n", html="<p>Hi</p>",
                message_id=f"<m{n}@acme.test>", date=datetime.now(UTC),
                extra_headers=[("List-Unsubscribe", "<https://acme.test/u/1.x>"),
                               ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")],
            ))  # fmt: skip
            signed = dkim_sign(raw, key, int(time.time())) + raw
            with smtplib.SMTP("127.0.0.1", mta.port, timeout=10) as client:
                client.sendmail("ana@acme.test", [f"bob{n}@example.test"], signed)
        await wait_for(lambda: len(smtp.received) == 2, timeout=30)
    finally:
        mta.stop()
        shutil.rmtree(directory, ignore_errors=True)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        selector = name.decode().split("._domainkey.")[0]
        return next(k for k in keys.values() if k.selector == selector).dns_record().encode()

    for got in smtp.received:
        assert b"Received: from" in got.data  # it went through postfix
        assert dkim.verify(got.data, dnsfunc=dns), got.data[:600]
