"""Recipient providers (core/providers.py): by the table, by MX hosts, and a sender's
backoff at one provider."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core import providers
from core.providers import Backoffs, Provider

T0 = datetime(2026, 12, 5, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("domain", "provider"),
    [("gmail.com", Provider.GOOGLE), ("Hotmail.com.", Provider.MICROSOFT),
     ("aol.com", Provider.YAHOO), ("icloud.com", Provider.APPLE), ("x.test", Provider.OTHER),
     ("acme.com", None)],
)  # fmt: skip
def test_well_known_domains_need_no_lookup(domain: str, provider: Provider | None) -> None:
    assert providers.known(domain) is provider


def test_mx_hosts_name_the_provider() -> None:
    assert providers.from_mx(["aspmx.l.google.com."]) is Provider.GOOGLE
    assert providers.from_mx(["acme-com.mail.protection.outlook.com"]) is Provider.MICROSOFT
    assert providers.from_mx(["mta5.am0.yahoodns.net"]) is Provider.YAHOO
    assert providers.from_mx(["mx01.mail.icloud.com"]) is Provider.APPLE
    assert providers.from_mx(["mail.acme.com", "notgoogle.com"]) is Provider.OTHER


def test_a_pair_backs_off_once_per_throttle_and_doubles_only_after_its_wait() -> None:
    b = Backoffs(first_wait=timedelta(seconds=60))
    until = b.throttled(1, Provider.YAHOO, T0)
    assert until == T0 + timedelta(seconds=60)
    # Answers to messages already under way: the same wait, not a longer one.
    for i in range(10):
        assert b.throttled(1, Provider.YAHOO, T0 + timedelta(milliseconds=i)) == until
    assert b.held_until(1, Provider.GOOGLE, T0) is None  # other providers go on
    assert b.held_until(2, Provider.YAHOO, T0) is None  # other senders too
    # Throttled again after the wait: twice as long, up to an hour.
    later = until + timedelta(seconds=1)
    assert b.throttled(1, Provider.YAHOO, later) == later + timedelta(seconds=120)
    t = later
    for _ in range(10):
        t = b.throttled(1, Provider.YAHOO, t + timedelta(hours=2))
    assert b.wait[(1, Provider.YAHOO)] == providers.LONGEST_WAIT
    # A delivery ends it.
    assert b.delivered(1, Provider.YAHOO)
    assert b.held_until(1, Provider.YAHOO, t - timedelta(minutes=1)) is None
    assert b.throttled(1, Provider.YAHOO, t) == t + timedelta(seconds=60)
