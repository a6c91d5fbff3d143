"""Signed one-click unsubscribe tokens (RFC 8058): made by the scheduler, checked anywhere."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote


class InvalidToken(ValueError):
    """The token is malformed or its signature does not match."""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    lead_id: int
    email: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), payload, hashlib.sha256).digest()[:16]


def make_token(secret: str, lead_id: int, email: str) -> str:
    """A URL-safe token naming the lead and its address, signed with `secret`."""
    payload = f"{lead_id}:{email.lower()}".encode()
    return f"{_b64(payload)}.{_b64(_sign(secret, payload))}"


def verify_token(secret: str, token: str) -> Unsubscribe:
    """Return what a token names, or raise InvalidToken."""
    try:
        body, sig = token.strip().split(".", 1)
        payload = _unb64(body)
        given = _unb64(sig)
        lead_text, email = payload.decode().split(":", 1)
        lead_id = int(lead_text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidToken("malformed unsubscribe token") from exc
    if not hmac.compare_digest(given, _sign(secret, payload)):
        raise InvalidToken("unsubscribe token signature does not match")
    return Unsubscribe(lead_id=lead_id, email=email)


def unsubscribe_url(base: str, token: str) -> str:
    """The one-click URL for a token: `base` with `token=` appended."""
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}token={quote(token, safe='')}"
