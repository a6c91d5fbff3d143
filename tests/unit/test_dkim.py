"""core/dkim.py: signatures an independent verifier (dkimpy) accepts, for RSA and Ed25519
keys, any subject and body (hypothesis), and that a changed header or body breaks."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from core import message
from core.dkim import InvalidKey, Key, load_key, load_keys, relaxed_body, sign

NOW = int(time.time())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def _pem(private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


KEYS = {
    "rsa": load_key("acme.test", "s2026", _pem(RSA_KEY)),
    "ed25519": load_key("acme.test", "ed2026", _pem(ED_KEY)),
}


def _verify(signed: bytes, key: Key) -> bool:
    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{key.selector}._domainkey.{key.domain}.".encode()
        return key.dns_record().encode()

    return bool(dkim.verify(signed, dnsfunc=dns))


def _message(subject: str = "Hello", text: str = "Hi there.\n", html: str | None = None) -> bytes:
    return message.build(
        message.Email(
            from_address="ana@acme.test",
            from_name="Ana Álvarez",
            to_address="bob@example.test",
            subject=subject,
            text=text,
            html=html,
            message_id="<m1@acme.test>",
            date=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
            in_reply_to="<m0@acme.test>",
            references=["<m0@acme.test>"],
            extra_headers=[
                ("List-Id", "<7.acme.test>"),
                ("List-Unsubscribe", "<https://acme.test/u/1.x>, <mailto:u@acme.test>"),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ],
        )
    )


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_the_signature_verifies_and_covers_the_one_click_headers(kind: str) -> None:
    raw = _message(html="<p>Hi</p>")
    header = sign(raw, KEYS[kind], now=NOW)
    assert _verify(header + raw, KEYS[kind])
    text = header.decode()
    assert f"a={KEYS[kind].algorithm};" in text
    assert "c=relaxed/relaxed;" in text
    signed = text.split("h=")[1].split(";")[0].replace("\r\n\t", "").split(":")
    assert {"from", "to", "subject", "date", "message-id", "list-unsubscribe",
            "list-unsubscribe-post", "list-id", "in-reply-to", "references"} <= set(signed)  # fmt: skip
    assert all(len(line) <= 78 for line in text.split("\r\n"))
    # Anything changed on the way breaks it.
    assert not _verify(header + raw.replace(b"Hi there.", b"Hi there!"), KEYS[kind])
    assert not _verify(header + raw.replace(b"Subject: Hello", b"Subject: Hallo"), KEYS[kind])
    assert not _verify(header + b"From: mallory@evil.test\r\n" + raw, KEYS[kind])


@given(st.text(max_size=200), st.text(max_size=2000))
@settings(max_examples=60, deadline=None)
def test_any_subject_and_body_verify(subject: str, text: str) -> None:
    raw = _message(subject=subject, text=text)
    assert _verify(sign(raw, KEYS["ed25519"], now=NOW) + raw, KEYS["ed25519"])


def test_relaxed_body_canonicalisation() -> None:
    assert relaxed_body(b"a  b \t\r\nc\r\n\r\n\r\n") == b"a b\r\nc\r\n"
    assert relaxed_body(b"") == b""


def test_keys_load_per_domain_the_newest_selector_and_refuse_bad_ones(tmp_path: Path) -> None:
    (tmp_path / "acme.test").mkdir()
    old = tmp_path / "acme.test" / "old.pem"
    old.write_bytes(_pem(RSA_KEY))
    new = tmp_path / "acme.test" / "new.pem"
    new.write_bytes(_pem(ED_KEY))
    os.utime(old, (1, 1))
    keys = load_keys(tmp_path)
    assert (keys["acme.test"].selector, keys["acme.test"].algorithm) == ("new", "ed25519-sha256")
    with pytest.raises(InvalidKey, match="not an unencrypted PEM"):
        load_key("acme.test", "x", b"not a key")
    with pytest.raises(InvalidKey, match="selector"):
        load_key("acme.test", "bad selector", _pem(ED_KEY))
    with pytest.raises(InvalidKey, match="only RSA and Ed25519"):
        load_key("acme.test", "s", _pem(ec.generate_private_key(ec.SECP256R1())))  # type: ignore[arg-type]


def _reference_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4 line by line, as written there."""
    lines = [re.sub(rb"[ \t]+", b" ", line).rstrip(b" ") for line in body.split(b"\r\n")]
    while lines and lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


@given(st.lists(st.text(alphabet=" \tab", max_size=8), max_size=12), st.booleans())
def test_relaxed_body_matches_the_rule_line_by_line(lines: list[str], crlf_at_end: bool) -> None:
    body = "\r\n".join(lines).encode() + (b"\r\n" if crlf_at_end else b"")
    assert relaxed_body(body) == _reference_body(body)
