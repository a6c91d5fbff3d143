"""A sender's own mail accounts: `senders.smtp_url` (`smtp://`, `smtp+starttls://` or
`smtps://user@host:port`) and `senders.imap_url` (`imap+starttls://`, `imaps://`). Parsed
and checked here; their passwords are kept apart, encrypted (runtime/credentials.py)."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit


class InvalidAccount(ValueError):
    """A URL that names no usable account; the message says what is wrong."""


class Tls(enum.StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


_SMTP = {"smtp": (Tls.NONE, 25), "smtp+starttls": (Tls.STARTTLS, 587), "smtps": (Tls.TLS, 465)}
_IMAP = {"imap": (Tls.NONE, 143), "imap+starttls": (Tls.STARTTLS, 143), "imaps": (Tls.TLS, 993)}


@dataclass(frozen=True, slots=True)
class Account:
    """Where and as whom to log in. `password` is never shown (repr) or logged."""

    scheme: str
    host: str
    port: int
    username: str | None
    tls: Tls
    password: str | None = field(default=None, repr=False, compare=True)

    @property
    def url(self) -> str:
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}"

    def with_password(self, password: str | None) -> Account:
        return Account(self.scheme, self.host, self.port, self.username, self.tls, password)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def parse(url: str, kind: str = "smtp") -> Account:
    """The account `url` names (kind `smtp` or `imap`); InvalidAccount says what is wrong."""
    schemes = _SMTP if kind == "smtp" else _IMAP
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidAccount(f"not a URL: {exc}") from None
    if parts.scheme not in schemes:
        raise InvalidAccount(
            f"the scheme must be one of {', '.join(schemes)}, not {parts.scheme!r}"
        )
    if not parts.hostname:
        raise InvalidAccount("names no host")
    if parts.password is not None:
        raise InvalidAccount("holds a password: give it apart (it is stored encrypted)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidAccount("must be scheme://user@host:port and nothing more")
    tls, default_port = schemes[parts.scheme]
    username = unquote(parts.username) if parts.username else None
    if tls is Tls.NONE and username and not _is_loopback(parts.hostname):
        raise InvalidAccount(
            f"would send {username}'s password to {parts.hostname} in clear:"
            f" use {kind}+starttls:// or {kind}s://"
        )
    return Account(parts.scheme, parts.hostname, port or default_port, username, tls)
