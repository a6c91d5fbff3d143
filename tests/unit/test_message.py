"""The message builder: the stdlib parser reads back what went in; lead data adds no header."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.message import (
    Email,
    InvalidAddress,
    build,
    check_address,
    display_name,
    message_id,
    one_line,
)

hostile = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300
) | st.sampled_from(
    [
        "x\r\nBcc: evil@x.test",
        "a\nSubject: two",
        "=?utf-8?q?x?=",
        "\u2028X-A: b",
        'Quote "me" \\ now',
        "Zoë Ünïcödé 日本語 😀",
        "  spaced  out  ",
    ]
)


def _display_name(data: bytes, msg: EmailMessage) -> str:
    """The From display name as RFC 2047 (6.2) reads it: whitespace between adjacent encoded
    words is not part of the text. (The stdlib's address parser keeps it, so a name split
    over several encoded words comes back from it with extra spaces.)"""
    name = msg["From"].addresses[0].display_name
    raw = data.split(b"\r\nTo:", 1)[0].removeprefix(b"From:").decode("ascii")
    phrase = " ".join(raw.replace("\r\n", "").split(" ")[:-1]).strip()
    if phrase.startswith("=?"):
        return str(make_header(decode_header(phrase)))
    return str(name)


def _parse(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _email(**kw: object) -> Email:
    base: dict[str, object] = {
        "from_address": "ana@acme.test",
        "from_name": "Ana",
        "to_address": "bob@example.test",
        "subject": "Hi",
        "text": "Hello",
        "message_id": "<1.1.abc@acme.test>",
        "date": datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
    }
    base.update(kw)
    return Email(**base)  # type: ignore[arg-type]


EXPECTED_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
}


@given(subject=hostile, name=hostile, text=hostile, html=st.none() | hostile)
@settings(max_examples=300, deadline=None)
def test_round_trip_and_no_injected_headers(
    subject: str, name: str, text: str, html: str | None
) -> None:
    data = build(_email(subject=subject, from_name=name, text=text, html=html))
    msg = _parse(data)
    assert msg.defects == []
    assert msg["Subject"] == one_line(subject)
    assert msg["From"].addresses[0].addr_spec == "ana@acme.test"
    assert _display_name(data, msg) == display_name(name)
    assert msg["To"].addresses[0].addr_spec == "bob@example.test"
    top = {k.lower() for k in msg}
    if html is not None:
        top.add("content-transfer-encoding")
    assert top == EXPECTED_HEADERS
    body = msg.get_body(("plain",))
    assert body is not None
    normal = text.replace("\r\n", "\n").replace("\r", "\n")
    assert body.get_content().replace("\r\n", "\n") == (
        normal if normal.endswith("\n") else normal + "\n"
    )
    if html is not None:
        part = msg.get_body(("html",))
        assert part is not None
        assert part.get_content().replace("\r\n", "\n").rstrip("\n") == html.replace(
            "\r\n", "\n"
        ).replace("\r", "\n").rstrip("\n")
    for line in data.split(b"\r\n"):
        assert len(line) <= 998
    assert b"\n" not in data.replace(b"\r\n", b"")


LONG_UNSUB = "<mailto:u@acme.test>, <https://u.test/" + "t" * 200 + ">"


def test_threading_and_list_headers() -> None:
    data = build(
        _email(
            in_reply_to="<a@x>",
            references=["<z@x>", "<a@x>"],
            extra_headers=[
                ("List-Unsubscribe", "<mailto:u@acme.test>, <https://u.test/" + "t" * 200 + ">"),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ],
        )
    )
    msg = _parse(data)
    assert msg["In-Reply-To"] == "<a@x>"
    assert msg["References"] == "<z@x> <a@x>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(msg["List-Unsubscribe"]) == LONG_UNSUB
    # Folded after the comma; the long URI is one token on a line of its own.
    assert b"List-Unsubscribe: <mailto:u@acme.test>,\r\n <https://u.test/" in data


def _header_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def _assert_folded(data: bytes) -> None:
    """No header line passes 998; none passes 78 unless it is one unbreakable token."""
    for line in _header_lines(data):
        assert len(line) <= 998, line
        if len(line) > 78:
            words = line.strip().split(b" ")
            assert len(words) == 1 or (len(words) == 2 and words[0].endswith(b":")), line
    for word in b" ".join(_header_lines(data)).split(b" "):
        if word.startswith(b"=?"):
            assert len(word) <= 75, word


any_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]))
domains = st.from_regex(r"\A[a-z0-9]{1,60}(\.[a-z0-9]{1,60}){0,3}\.test\Z", fullmatch=True)


@given(
    name=any_text.map(lambda t: t[:200]),
    subject=any_text.map(lambda t: t[:950]),
    thread=st.integers(min_value=0, max_value=100),
    domain=domains,
)
@settings(max_examples=300, deadline=None)
def test_headers_fold_and_read_back_without_defects(
    name: str, subject: str, thread: int, domain: str
) -> None:
    ids = [
        message_id(123456789, step, "2026-11-24T10:00:00+00:00", domain, KEY)
        for step in range(1, thread + 1)
    ]
    data = build(
        _email(
            from_name=name,
            subject="Re: " + subject,
            message_id=message_id(123456789, thread + 1, "salt", domain, KEY),
            in_reply_to=ids[-1] if ids else None,
            references=ids,
        )
    )
    _assert_folded(data)
    msg = _parse(data)
    assert msg.defects == []
    for key in msg:
        assert getattr(msg[key], "defects", ()) == (), key
    assert str(msg["Subject"]) == one_line("Re: " + subject)
    assert _display_name(data, msg) == display_name(name)
    if ids:
        assert str(msg["References"]).split() == ids
        assert str(msg["In-Reply-To"]) == ids[-1]


def test_re_stays_outside_the_encoded_words_and_names_split_at_75() -> None:
    data = build(_email(subject="Re: Grüße aus Köln", from_name="Ö" * 64))
    assert b"Subject: Re: =?utf-8?b?" in data
    _assert_folded(data)
    assert _display_name(data, _parse(data)) == "Ö" * 64


KEY = b"message-id-secret-of-the-unit-tests-0123"


@given(
    lead=st.integers(min_value=1, max_value=2**63 - 1),
    step=st.integers(min_value=1, max_value=1000),
    salt=st.text(max_size=40),
)
@settings(max_examples=200, deadline=None)
def test_message_id_is_deterministic_per_lead_and_step_and_keyed(
    lead: int, step: int, salt: str
) -> None:
    a = message_id(lead, step, salt, "acme.test", KEY)
    assert a == message_id(lead, step, salt, "acme.test", KEY)  # every retry, every replica
    assert a != message_id(lead, step + 1, salt, "acme.test", KEY)
    assert a != message_id(lead, step, salt, "acme.test", KEY + b"x")  # keyed
    # Nothing of the lead, the step or the salt can be read from it, and it is an RFC 5322
    # msg-id of 26 base32 characters (128 bits).
    local, _, domain = a.strip("<>").partition("@")
    assert domain == "acme.test"
    assert re.fullmatch(r"[a-z2-7]{26}", local)


def test_one_recipient_cannot_compute_her_neighbours_message_id() -> None:
    """The attack of the unkeyed form: a whole import shares the enrolment time, so from her
    own Message-ID a recipient recovered it and computed her neighbours'. Without the key,
    knowing lead, step and salt gives nothing."""
    salt = "2026-11-24T10:00:00+00:00"
    mine = message_id(41, 1, salt, "acme.test", KEY)
    neighbour = message_id(42, 1, salt, "acme.test", KEY)
    unkeyed = hashlib.sha256(f"42:1:{salt}".encode()).hexdigest()[:20]
    assert unkeyed not in neighbour
    assert mine != neighbour
    assert neighbour != message_id(42, 1, salt, "acme.test", b"")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "bob",
        "bob@",
        "@x.test",
        "a b@x.test",
        "a@b@c.test",
        "bob@example",
        "x\r\n@x.test",
        "bö@x.test",
        "a..b@x.test",
    ],
)
def test_bad_addresses_are_refused(bad: str) -> None:
    with pytest.raises(InvalidAddress):
        check_address(bad)
