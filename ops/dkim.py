"""DKIM keys: make one for a domain (Ed25519 or RSA-2048) in DKIM_KEYS_DIR, and show the
DNS TXT record each key needs published at `<selector>._domainkey.<domain>`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from core import dkim


class KeyExists(ValueError):
    """A key with that domain and selector exists already."""


@dataclass(frozen=True, slots=True)
class Published:
    domain: str
    selector: str
    algorithm: str
    name: str  # where the TXT record goes
    record: str


def _published(key: dkim.Key) -> Published:
    return Published(
        key.domain,
        key.selector,
        key.algorithm,
        f"{key.selector}._domainkey.{key.domain}",
        key.dns_record(),
    )


# A host name and one DNS label: what a key's path is made of, so nothing is written outside
# DKIM_KEYS_DIR (no "..", no "/").
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_HOST = re.compile(rf"{_LABEL.pattern}(?:\.{_LABEL.pattern})*")


def create(directory: Path, domain: str, selector: str, *, algorithm: str = "rsa") -> Published:
    """Write a new private key (mode 0600) and return the record to publish."""
    domain = domain.lower().strip(".")
    if not _HOST.fullmatch(domain) or "." not in domain:
        raise ValueError(f"not a domain name: {domain!r}")
    if not _LABEL.fullmatch(selector):
        raise ValueError(f"not a DKIM selector (one DNS label): {selector!r}")
    private = (
        ed25519.Ed25519PrivateKey.generate()
        if algorithm == "ed25519"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = dkim.load_key(domain, selector, pem)  # checks the selector
    path = directory / domain / f"{selector}.pem"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyExists(f"{path} exists already") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return _published(key)


def records(directory: Path) -> list[Published]:
    """The signing key of each domain, with its record."""
    return [_published(k) for _, k in sorted(dkim.load_keys(directory).items())]
