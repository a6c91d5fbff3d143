"""Webhooks as Standard Webhooks (https://www.standardwebhooks.com/) define them: the event
types, the signing secret, the signature, when a failed delivery is tried again, and which
targets a deliverer may connect to. Pure: the webhooks daemon does the I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from yarl import URL

EVENT_TYPES = (
    "lead.sent", "lead.replied", "lead.bounced", "lead.unsubscribed", "lead.complained",
    "lead.completed", "lead.failed", "lead.stopped", "sender.paused",
)  # fmt: skip
TEST_TYPE = "webhook.test"  # `ops webhook test`: one message, not an event
SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix, not a secret)


class InvalidWebhook(ValueError):
    """An endpoint that cannot be subscribed: its URL or its event types."""


def new_secret() -> str:
    """A signing secret: whsec_ and 24 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: v1, and the HMAC-SHA256 of `id.timestamp.body` keyed
    with the secret's bytes, in base64."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def msg_id(delivery_id: int) -> str:
    """The `webhook-id` of a delivery: the same on every try, and on a replay."""
    return f"msg_{delivery_id}"


def check_event_types(types: list[str]) -> list[str]:
    if not types:
        raise InvalidWebhook(f"name at least one event type: {', '.join(EVENT_TYPES)}")
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidWebhook(f"unknown event type {unknown[0]!r}: one of {', '.join(EVENT_TYPES)}")
    return list(dict.fromkeys(types))


def check_url(url: str, *, allow_private: bool) -> str:
    """An endpoint's URL: https (http only where private targets are allowed), a host, no
    credentials; an IP literal is checked as a resolved address would be."""
    try:
        parsed = URL(url)
    except ValueError:
        raise InvalidWebhook(f"not a URL: {url[:100]!r}") from None
    if parsed.scheme not in ("https", "http") or not parsed.host or not parsed.is_absolute():
        raise InvalidWebhook(f"an endpoint is an https:// URL, not {url[:100]!r}")
    if parsed.scheme == "http" and not allow_private:
        raise InvalidWebhook("an endpoint is https (http only with WEBHOOK_ALLOW_PRIVATE=true)")
    if parsed.user or parsed.password:
        raise InvalidWebhook("an endpoint URL carries no user or password")
    if len(url) > 2000:
        raise InvalidWebhook("an endpoint URL is at most 2000 characters")
    try:
        literal = ipaddress.ip_address(parsed.host)
    except ValueError:
        literal = None
    if literal is not None and not target_allowed(literal, allow_private=allow_private):
        raise InvalidWebhook(f"{literal} is not a public address (WEBHOOK_ALLOW_PRIVATE=true)")
    return str(parsed)


def target_allowed(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_private: bool
) -> bool:
    """May a deliverer connect to this address? A public one always; a private, loopback or
    link-local one only when allowed; never an unspecified, multicast or reserved one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified or address.is_multicast or address in _RESERVED_V4:
        return False
    if address.is_global:
        return True
    return allow_private


_RESERVED_V4 = ipaddress.ip_network("240.0.0.0/4")  # "future use" and the broadcast address


@dataclass(frozen=True, slots=True)
class Retry:
    """Failed tries are tried again after `first_seconds`, doubling to `max_seconds`, each
    wait up to a fifth longer at random, for `hours` after the event; then the delivery is
    failed."""

    hours: float = 24.0
    first_seconds: float = 5.0
    max_seconds: float = 3600.0

    def next_at(self, attempts: int, created_at: datetime, now: datetime,
                rng: random.Random | None = None) -> datetime | None:  # fmt: skip
        """When to try again after `attempts` failed tries; None: give up."""
        wait = min(self.max_seconds, self.first_seconds * math.pow(2, max(attempts - 1, 0)))
        wait *= 1 + (rng or random).uniform(0, 0.2)
        at = now + timedelta(seconds=wait)
        return None if at > created_at + timedelta(hours=self.hours) else at
