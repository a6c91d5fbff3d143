"""Building RFC 5322 messages as bytes, fast, with no way for lead data to add a header.

Every header value that could carry lead data goes through `one_line` (control characters
become spaces) and is either plain printable ASCII or RFC 2047 encoded words, all on one
line (no folding, which some relays break when they re-sign), except a Subject too long
for one line, which folds between encoded words. Bodies are UTF-8 in
quoted-printable, so no body line exceeds 76 characters and the MIME boundary, which
starts with "=_", can never occur in the encoded content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime

# Runs of spaces, C0/C1 controls and Unicode line separators: one space in a header.
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]+")
_ATEXT_PHRASE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+$")
_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$"
)
# An encoded word is at most 75 characters: "=?utf-8?b?" + base64 + "?=" leaves 63 for
# the base64 text, i.e. 45 bytes of UTF-8 per word.
_WORD_BYTES = 45
MAX_SUBJECT_CHARS = 900
MAX_NAME_CHARS = 64
_FOLD_AT = 900


class InvalidAddress(ValueError):
    """An email address this product cannot send to or from."""


def one_line(value: str) -> str:
    """Collapse each run of whitespace, controls and line breaks to one space, and trim."""
    return " ".join(_CONTROL.sub(" ", value).split())


def check_address(address: str) -> str:
    """Return `address` if it is a plain ASCII addr-spec, else raise InvalidAddress."""
    if len(address) > 254 or not _ADDRESS.match(address):
        raise InvalidAddress(f"not a valid email address: {address!r}")
    local, _, domain = address.rpartition("@")
    if len(local) > 64 or ".." in address or local.startswith(".") or local.endswith("."):
        raise InvalidAddress(f"not a valid email address: {address!r}")
    if "." not in domain and domain != "localhost":
        raise InvalidAddress(f"not a valid email address: {address!r}")
    return address


def _word(data: bytes) -> str:
    return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="


def _encoded_words(text: str) -> str:
    """RFC 2047 'B' encoded words for `text`, split on character boundaries.

    Words share a line up to ~900 characters; a longer value folds between words only.
    """
    words: list[str] = []
    chunk = bytearray()
    for ch in text:
        b = ch.encode("utf-8")
        if len(chunk) + len(b) > _WORD_BYTES:
            words.append(_word(bytes(chunk)))
            chunk.clear()
        chunk += b
    if chunk:
        words.append(_word(bytes(chunk)))
    out: list[str] = []
    line = 0
    for w in words:
        if out and line + len(w) + 1 > _FOLD_AT:
            out.append("\r\n ")
            line = 1
        elif out:
            out.append(" ")
            line += 1
        out.append(w)
        line += len(w)
    return "".join(out)


def display_name(name: str | None) -> str:
    """The display name as sent: one line, at most MAX_NAME_CHARS characters."""
    return one_line(name or "")[:MAX_NAME_CHARS].strip()


def _needs_encoding(text: str) -> bool:
    return not text.isascii() or "=?" in text or "\\" in text


def encode_unstructured(value: str) -> str:
    """A header value (Subject) that parses back to exactly `one_line(value)`."""
    text = one_line(value)
    return _encoded_words(text) if _needs_encoding(text) else text


def encode_mailbox(name: str | None, address: str) -> str:
    """`Display Name <addr>` with the name quoted or encoded as needed."""
    check_address(address)
    display = display_name(name)
    if not display:
        return address
    if _needs_encoding(display):
        # One encoded word per word of the name: parsers put a space between adjacent
        # encoded words of a phrase, so each such space must be a real one.
        return f"{' '.join(_word(w.encode()) for w in display.split(' '))} <{address}>"
    if _ATEXT_PHRASE.match(display):
        return f"{display} <{address}>"
    quoted = display.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{address}>'


def message_id(lead_id: int, step: int, salt: str, domain: str) -> str:
    """The deterministic Message-ID of a lead's step (same on every retry and replica)."""
    digest = hashlib.sha256(f"{lead_id}:{step}:{salt}".encode()).hexdigest()[:20]
    return f"<{lead_id}.{step}.{digest}@{domain}>"


def _qp(text: str) -> bytes:
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    encoded = binascii.b2a_qp(body.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\n", b"\r\n")


_TEXT_HEADERS = (
    b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'
)
_HTML_HEADERS = (
    b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'
)


@dataclass(frozen=True, slots=True)
class Email:
    """Everything needed to write one message; header values are raw (unencoded) text."""

    from_address: str
    from_name: str | None
    to_address: str
    subject: str
    text: str
    message_id: str
    date: datetime
    html: str | None = None
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    extra_headers: Sequence[tuple[str, str]] = field(default_factory=tuple)


def build(email: Email) -> bytes:
    """Serialise `email` to CRLF bytes ready for SMTP DATA."""
    headers = [
        f"From: {encode_mailbox(email.from_name, email.from_address)}",
        f"To: {encode_mailbox(None, email.to_address)}",
        f"Subject: {encode_unstructured(email.subject)}",
        f"Date: {format_datetime(email.date)}",
        f"Message-ID: {one_line(email.message_id)}",
    ]
    if email.in_reply_to:
        headers.append(f"In-Reply-To: {one_line(email.in_reply_to)}")
    if email.references:
        headers.append(f"References: {' '.join(one_line(r) for r in email.references)}")
    for name, value in email.extra_headers:
        headers.append(f"{one_line(name)}: {one_line(value)}")
    headers.append("MIME-Version: 1.0")
    head = ("\r\n".join(headers) + "\r\n").encode("utf-8")
    if email.html is None:
        return head + _TEXT_HEADERS + b"\r\n" + _qp(email.text)
    boundary = b"=_" + hashlib.sha256(email.message_id.encode()).hexdigest()[:24].encode()
    return b"".join(
        (
            head,
            b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n\r\n',
            # The CRLF before a boundary belongs to the boundary: each part ends with one more.
            b"--" + boundary + b"\r\n" + _TEXT_HEADERS + b"\r\n" + _qp(email.text) + b"\r\n",
            b"--" + boundary + b"\r\n" + _HTML_HEADERS + b"\r\n" + _qp(email.html) + b"\r\n",
            b"--" + boundary + b"--\r\n",
        )
    )
