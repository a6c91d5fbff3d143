"""Signed one-click unsubscribe tokens (RFC 8058): made by the scheduler, checked anywhere.

A token names a lead by id and carries an HMAC-SHA256 tag made with UNSUBSCRIBE_SECRET; the
address is looked up when the token is applied, so no address travels in a link. Tokens
of the earlier form (address inside, base64) are still accepted when their tag verifies,
so links in mail already sent keep working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from urllib.parse import quote

MIN_SECRET_BYTES = 32
_TOKEN = re.compile(r"^([1-9][0-9]{0,18})\.([A-Za-z0-9_-]{22})$")
_LEGACY = re.compile(r"^([A-Za-z0-9_-]{1,700})\.([A-Za-z0-9_-]{22})$")


class InvalidToken(ValueError):
    """The token is malformed or its signature does not match."""


def check_secret(secret: str) -> bytes:
    """The key as bytes; raise ValueError if it is too short to sign anything."""
    key = secret.encode()
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"the unsubscribe secret must be at least {MIN_SECRET_BYTES} bytes")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:16]


def make_token(secret: str, lead_id: int) -> str:
    """A URL-safe token naming the lead, signed with `secret`."""
    return f"{lead_id}.{_b64(_tag(check_secret(secret), b'unsubscribe:%d' % lead_id))}"


def verify_token(secret: str, token: str) -> int:
    """Return the lead id a token names, or raise InvalidToken (ValueError: no secret)."""
    key = check_secret(secret)
    token = token.strip()
    if m := _TOKEN.match(token):
        lead_id = int(m.group(1))
        if lead_id < 2**63 and hmac.compare_digest(
            _unb64(m.group(2)), _tag(key, b"unsubscribe:%d" % lead_id)
        ):
            return lead_id
        raise InvalidToken("unsubscribe token signature does not match")
    if m := _LEGACY.match(token):
        try:
            payload = _unb64(m.group(1))
            lead_text, _, _email = payload.decode().partition(":")
            lead_id = int(lead_text) if lead_text.isascii() and lead_text.isdigit() else 0
        except (ValueError, UnicodeDecodeError):
            lead_id = 0
        if 0 < lead_id < 2**63 and hmac.compare_digest(_unb64(m.group(2)), _tag(key, payload)):
            return lead_id
        raise InvalidToken("unsubscribe token signature does not match")
    raise InvalidToken("malformed unsubscribe token")


def unsubscribe_url(base: str, token: str) -> str:
    """The one-click URL for a token: the API's route `/u/{token}` under `base`, the public
    address of that route (UNSUBSCRIBE_URL, e.g. https://acme.example/u)."""
    return f"{base.rstrip('/')}/{quote(token, safe='')}"
