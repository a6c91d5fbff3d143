"""Webhooks' pure rules: the signature as a receiver's library checks it, the targets a
deliverer may reach, the URLs an endpoint may have, and the retry schedule."""

from __future__ import annotations

import ipaddress
import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core import webhooks
from core.webhooks import InvalidWebhook, Retry, check_url, target_allowed

T0 = datetime(2026, 12, 5, tzinfo=UTC)


@given(st.binary(max_size=2000), st.integers(1, 2**62))
def test_the_signature_verifies_with_the_standard_webhooks_library(body: bytes, n: int) -> None:
    secret = webhooks.new_secret()
    stamp = int(datetime.now(UTC).timestamp())
    mid = webhooks.msg_id(n)
    headers = {"webhook-id": mid, "webhook-timestamp": str(stamp),
               "webhook-signature": webhooks.sign(secret, mid, stamp, body)}  # fmt: skip
    Webhook(secret).verify(body, headers, json_parse=False)
    # Another secret, another id or one more byte: refused.
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(body, headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": mid + "0"}, json_parse=False)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True), ("2606:2800:220:1::1", True),
        ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.0.1", False), ("172.16.5.5", False),
        ("169.254.169.254", False), ("100.64.0.1", False), ("::1", False), ("fd00::1", False),
        ("fe80::1", False), ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False),
    ],
)  # fmt: skip
def test_private_targets_only_when_allowed(address: str, public: bool) -> None:
    ip = ipaddress.ip_address(address)
    assert target_allowed(ip, allow_private=False) is public
    assert target_allowed(ip, allow_private=True) is True


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "224.0.0.1", "240.0.0.1", "ff02::1"])  # noqa: S104
def test_unspecified_multicast_and_reserved_never(address: str) -> None:
    assert not target_allowed(ipaddress.ip_address(address), allow_private=True)


@pytest.mark.parametrize(
    ("url", "allow", "problem"),
    [
        ("https://hooks.example.com/in", False, None),
        ("http://hooks.example.com/in", False, "https"),
        ("http://127.0.0.1:8080/in", True, None),
        ("https://127.0.0.1/in", False, "not a public address"),
        ("https://[::1]/in", False, "not a public address"),
        ("https://user:pw@hooks.example.com/", False, "no user or password"),
        ("ftp://hooks.example.com/", False, "https://"),
        ("hooks.example.com/in", False, "https://"),
        ("https:///nohost", False, "https://"),
    ],
)  # fmt: skip
def test_endpoint_urls(url: str, allow: bool, problem: str | None) -> None:
    if problem is None:
        assert check_url(url, allow_private=allow)
    else:
        with pytest.raises(InvalidWebhook, match=problem):
            check_url(url, allow_private=allow)


def test_event_types_are_checked() -> None:
    assert webhooks.check_event_types(["lead.sent", "lead.sent"]) == ["lead.sent"]
    with pytest.raises(InvalidWebhook, match=re.escape("unknown event type 'lead.opened'")):
        webhooks.check_event_types(["lead.opened"])
    with pytest.raises(InvalidWebhook, match="at least one"):
        webhooks.check_event_types([])


@given(st.integers(1, 60), st.floats(0, 48 * 3600), st.integers(0, 999))
def test_retries_back_off_and_end_with_the_retry_period(
    attempts: int, elapsed: float, seed: int
) -> None:
    retry = Retry(hours=24)
    now = T0 + timedelta(seconds=elapsed)
    at = retry.next_at(attempts, T0, now, random.Random(seed))
    if at is None:
        # Given up only when the next wait would end past the period.
        assert now + timedelta(seconds=min(3600, 5 * 2 ** (attempts - 1))) > T0 + timedelta(
            hours=24
        )
    else:
        wait = (at - now).total_seconds()
        base = min(3600.0, 5 * 2.0 ** (attempts - 1))
        assert base <= wait <= base * 1.2 + 1e-6
        assert at <= T0 + timedelta(hours=24)
