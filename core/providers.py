"""Mailbox providers: which provider receives a recipient domain's mail (by a table of
well-known domains, else by the domain's MX hosts), and the backoff of one sender at one
provider after that provider said "try later / rate limited" (core/backoff.py `throttled`).
Pure: the worker resolves MX hosts (worker/providers.py) and tells it what happened."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta


class Provider(enum.StrEnum):
    GOOGLE = "google"
    MICROSOFT = "microsoft"
    YAHOO = "yahoo"
    APPLE = "apple"
    OTHER = "other"


KNOWN: dict[str, Provider] = {
    **dict.fromkeys(("gmail.com", "googlemail.com"), Provider.GOOGLE),
    **dict.fromkeys(
        (
            "outlook.com",
            "hotmail.com",
            "live.com",
            "msn.com",
            "hotmail.co.uk",
            "outlook.de",
            "hotmail.fr",
            "live.co.uk",
        ),
        Provider.MICROSOFT,
    ),
    **dict.fromkeys(
        (
            "yahoo.com",
            "ymail.com",
            "rocketmail.com",
            "aol.com",
            "yahoo.co.uk",
            "yahoo.fr",
            "yahoo.de",
            "yahoo.co.jp",
        ),
        Provider.YAHOO,
    ),
    **dict.fromkeys(("icloud.com", "me.com", "mac.com"), Provider.APPLE),
}
# The MX host suffixes each provider's mail servers answer under.
_MX: tuple[tuple[str, Provider], ...] = (
    (".google.com", Provider.GOOGLE),
    (".googlemail.com", Provider.GOOGLE),
    (".outlook.com", Provider.MICROSOFT),
    (".hotmail.com", Provider.MICROSOFT),
    (".yahoodns.net", Provider.YAHOO),
    (".icloud.com", Provider.APPLE),
)


# Names reserved never to be real mail domains (RFC 2606, RFC 6761): nothing to look up.
_RESERVED = (".test", ".example", ".invalid", ".localhost", ".local")


def known(domain: str) -> Provider | None:
    """The provider of a well-known domain (or OTHER for a reserved name); None: ask DNS."""
    name = domain.lower().rstrip(".")
    if ("." + name).endswith(_RESERVED) or not name:
        return KNOWN.get(name, Provider.OTHER)
    return KNOWN.get(name)


def from_mx(hosts: Iterable[str]) -> Provider:
    """The provider whose servers the MX hosts are, else OTHER."""
    for host in hosts:
        name = "." + host.lower().rstrip(".")
        for suffix, provider in _MX:
            if name.endswith(suffix):
                return provider
    return Provider.OTHER


FIRST_WAIT = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=1)


@dataclass(slots=True)
class Backoffs:
    """Each sender's backoffs at providers that throttled it: a pair waits `wait` (doubling
    from the first, at most an hour) after each throttle, and forgets it on a delivery."""

    first_wait: timedelta = FIRST_WAIT
    until: dict[tuple[int, Provider], datetime] = field(default_factory=dict)
    wait: dict[tuple[int, Provider], timedelta] = field(default_factory=dict)

    def held_until(self, sender_id: int, provider: Provider, now: datetime) -> datetime | None:
        at = self.until.get((sender_id, provider))
        return at if at is not None and at > now else None

    def throttled(self, sender_id: int, provider: Provider, now: datetime) -> datetime:
        """The pair was told to slow down: until when it waits. Answers to messages that
        were under way when it started waiting change nothing; a throttle after the wait is
        over doubles it."""
        key = (sender_id, provider)
        current = self.held_until(sender_id, provider, now)
        if current is not None:
            return current
        last = self.wait.get(key)
        wait = self.first_wait if last is None else min(last * 2, LONGEST_WAIT)
        self.wait[key] = wait
        self.until[key] = now + wait
        return self.until[key]

    def delivered(self, sender_id: int, provider: Provider) -> bool:
        """A delivery to that provider: the pair's backoff is over (True if it had one)."""
        key = (sender_id, provider)
        self.until.pop(key, None)
        return self.wait.pop(key, None) is not None
