"""Writing an inbound message as a mail client or a stranger would: the tests' one builder."""

from __future__ import annotations

import uuid


def message(frm: str, subject: str, body: str, *, to: str, **headers: str) -> bytes:
    """A plain message from `frm` to `to`; `headers` as keywords (In_Reply_To=...)."""
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return (
        f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@mail.example.test>\r\n{extra}\r\n{body}\r\n"
    ).encode()
