"""core/accounts.py (account URLs) and runtime/credentials.py (passwords at rest)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.accounts import InvalidAccount, Tls, parse
from runtime.credentials import Box, CredentialsError

KEY = "k" * 40


def test_urls_name_host_port_user_and_tls() -> None:
    a = parse("smtp+starttls://ana%40acme.test@smtp.gmail.com")
    assert (a.host, a.port, a.username, a.tls) == (
        "smtp.gmail.com",
        587,
        "ana@acme.test",
        Tls.STARTTLS,
    )
    assert a.url == "smtp+starttls://ana%40acme.test@smtp.gmail.com:587"
    assert parse(a.url) == a  # read back the same
    assert parse("smtps://u@mail.example.test").port == 465
    assert parse("smtp://127.0.0.1:2525").username is None
    assert parse("imaps://u@imap.example.test", "imap").port == 993
    assert "secret" not in repr(parse("smtps://u@h.test").with_password("secret"))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://h.test", "scheme must be one of"),
        ("smtps://", "names no host"),
        ("smtps://u:pw@h.test", "holds a password"),
        ("smtps://u@h.test/inbox", "nothing more"),
        ("smtp://u@mail.example.test", "in clear"),
        ("smtps://u@h.test:99999", "not a URL"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(InvalidAccount, match=why):
        parse(url)


@given(st.text(max_size=100))
def test_passwords_seal_and_open(password: str) -> None:
    box = Box(KEY)
    assert box.open(box.seal(password)) == password
    assert b"correct horse battery" not in box.seal("correct horse battery staple")


def test_keys_rotate_and_a_foreign_or_short_key_is_refused() -> None:
    old = Box("old-" + KEY).seal("pw")
    rotated = Box(f"new-{KEY},old-{KEY}")
    assert rotated.open(old) == "pw"
    with pytest.raises(CredentialsError, match="different key"):
        Box(f"old-{KEY}").open(rotated.seal("pw2"))
    with pytest.raises(CredentialsError, match="at least 32 bytes"):
        Box("short")
    with pytest.raises(CredentialsError, match="not set"):
        Box(" , ")
