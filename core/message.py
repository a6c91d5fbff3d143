"""Building RFC 5322 messages as bytes, fast, with no way for lead data to add a header.

Every header value that could carry lead data goes through `one_line` (control characters
become spaces) and is written as plain printable ASCII words or RFC 2047 encoded words of
at most 75 characters, folded between words so no line passes 78 characters unless a
single word is longer (a long Message-ID), and none ever passes 998. Words that need no
encoding stay readable ("Re: " before an encoded subject stays plain text). Bodies are
UTF-8 in quoted-printable, so no body line exceeds 76 characters and the MIME boundary,
which starts with "=_", can never occur in the encoded content.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime

# Runs of spaces, C0/C1 controls and Unicode line separators: one space in a header.
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]+")
_ATEXT_PHRASE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+$")
_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$"
)
# RFC 5322 2.1.1: lines SHOULD stay within 78 characters (and MUST within 998).
LINE = 78
# RFC 2047: an encoded word is at most 75 characters; "=?utf-8?b?" and "?=" take 12.
_WORD_MAX = 75
_WORD_OVERHEAD = 12
# A plain word longer than this is encoded instead, so that it can be split over lines.
_PLAIN_WORD_MAX = LINE - 2
MAX_SUBJECT_CHARS = 900
MAX_NAME_CHARS = 64


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


def _needs_encoding(word: str) -> bool:
    return not word.isascii() or "=?" in word or "\\" in word or len(word) > _PLAIN_WORD_MAX


class _Folder:
    """Writes one header's tokens separated by single spaces, folding (CRLF + space) before
    a token that would pass LINE; encoded text is cut into words that fit the line."""

    def __init__(self, name: str) -> None:
        self.parts: list[str] = [name, ":"]
        self.col = len(name) + 1
        self.empty = True

    def token(self, text: str) -> None:
        # Never before the first token: a value starting on the next line reads back with
        # the fold's space in front of it.
        if self.col + 1 + len(text) > LINE and not self.empty:
            self.parts.append("\r\n ")
            self.col = 1
        else:
            self.parts.append(" ")
            self.col += 1
        self.parts.append(text)
        self.col += len(text)
        self.empty = False

    def encoded(self, text: str) -> None:
        """`text` as encoded words. Whitespace between adjacent encoded words is dropped by
        readers, so every space of `text` travels inside the words."""
        chunk = bytearray()
        for ch in text:
            b = ch.encode("utf-8")
            if chunk and len(chunk) + len(b) > self._room():
                self.token(_word(bytes(chunk)))
                chunk.clear()
            chunk += b
        if chunk:
            self.token(_word(bytes(chunk)))

    def _room(self) -> int:
        """UTF-8 bytes an encoded word may carry and still fit on the current line."""
        width = min(_WORD_MAX, LINE - self.col - 1) - _WORD_OVERHEAD
        if width < 8:  # too little left on this line: the word goes on the next one
            width = _WORD_MAX - _WORD_OVERHEAD
        return (width // 4) * 3

    def text(self) -> str:
        return "".join(self.parts)


def _word(data: bytes) -> str:
    return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="


def _runs(text: str) -> Iterable[tuple[bool, str]]:
    """(encode?, text) runs of `text`'s words: plain words alone, words that need encoding
    joined with their spaces, so a reader puts back exactly the spaces there were."""
    pending: list[str] = []
    for w in text.split(" "):
        if _needs_encoding(w):
            pending.append(w)
            continue
        if pending:
            yield True, " ".join(pending)
            pending = []
        yield False, w
    if pending:
        yield True, " ".join(pending)


def display_name(name: str | None) -> str:
    """The display name as sent: one line, at most MAX_NAME_CHARS characters."""
    return one_line(name or "")[:MAX_NAME_CHARS].strip()


def unstructured_header(name: str, value: str) -> str:
    """`Name: value` (Subject and the like), folded; parses back to `one_line(value)`."""
    out = _Folder(name)
    text = one_line(value)
    if not text:
        return f"{name}: "
    for encode, run in _runs(text):
        if encode:
            out.encoded(run)
        else:
            out.token(run)
    return out.text()


def mailbox_header(name: str, display: str | None, address: str) -> str:
    """`Name: Display Name <addr>`, the name as atoms, a quoted string or encoded words."""
    check_address(address)
    out = _Folder(name)
    shown = display_name(display)
    if not shown:
        out.token(address)
        return out.text()
    if shown.isascii() and "=?" not in shown:
        if _ATEXT_PHRASE.match(shown):
            for w in shown.split(" "):
                out.token(w)
        else:
            out.token('"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"')
    else:
        # In a phrase every word that is not an atom must be encoded: the whole name is.
        out.encoded(shown)
    out.token(f"<{address}>")
    return out.text()


def tokens_header(name: str, tokens: Iterable[str]) -> str:
    """`Name: a b c` for structured values made of tokens (message ids, <uri>, lists)."""
    out = _Folder(name)
    for t in tokens:
        for word in one_line(t).split(" "):
            if word:
                out.token(word)
    return out.text()


def message_id(lead_id: int, step: int, salt: str, domain: str, key: bytes) -> str:
    """The Message-ID of a lead's step: deterministic (the same on every retry and replica),
    and keyed (HMAC-SHA256 with MESSAGE_ID_SECRET), so that no one who has seen their own
    can compute another lead's."""
    tag = hmac.new(key, f"{lead_id}:{step}:{salt}".encode(), hashlib.sha256).digest()
    return f"<{_b32(tag[:16])}@{domain}>"


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


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
        mailbox_header("From", email.from_name, email.from_address),
        mailbox_header("To", None, email.to_address),
        unstructured_header("Subject", email.subject),
        f"Date: {format_datetime(email.date)}",
        tokens_header("Message-ID", [email.message_id]),
    ]
    if email.in_reply_to:
        headers.append(tokens_header("In-Reply-To", [email.in_reply_to]))
    if email.references:
        headers.append(tokens_header("References", email.references))
    for name, value in email.extra_headers:
        headers.append(tokens_header(one_line(name), [value]))
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
