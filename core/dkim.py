"""DKIM signatures (RFC 6376, relaxed/relaxed; RSA-SHA256 and Ed25519-SHA256 of RFC 8463)
for the messages core/message.py writes, with the `cryptography` package's primitives.

Keys live in `DKIM_KEYS_DIR/<domain>/<selector>.pem` (PKCS#8 or traditional PEM, RSA or
Ed25519); a message whose From domain has a key is signed with it. Signing is a pure
function of the message bytes, the key and the time.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

# What a signature covers (docs/architecture.md §6), in this order, each one present in
# the message.
SIGNED = (
    "from", "to", "subject", "date", "message-id", "in-reply-to", "references",
    "list-id", "list-unsubscribe", "list-unsubscribe-post",
    "mime-version", "content-type", "content-transfer-encoding",
)  # fmt: skip
# Named once more than they occur: a second From or Subject added on the way breaks the
# signature instead of being shown to the reader unsigned.
OVERSIGNED = ("from", "subject")

_WSP = re.compile(rb"[ \t]+")
_FOLD = re.compile(rb"\r\n(?=[ \t])")
_LINE_END_WSP = re.compile(rb" (?=\r\n|$)")
_SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class InvalidKey(ValueError):
    """A key file that is not an RSA (>= 1024 bits) or Ed25519 private key."""


@dataclass(frozen=True, slots=True)
class Key:
    domain: str
    selector: str
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

    @property
    def algorithm(self) -> str:
        return (
            "ed25519-sha256"
            if isinstance(self.private, ed25519.Ed25519PrivateKey)
            else "rsa-sha256"
        )

    def dns_record(self) -> str:
        """The TXT record to publish at `<selector>._domainkey.<domain>`."""
        public = self.private.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def load_key(domain: str, selector: str, pem: bytes) -> Key:
    if not _SELECTOR.match(selector):
        raise InvalidKey(f"not a DKIM selector: {selector!r}")
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidKey(f"{domain}/{selector}: not an unencrypted PEM private key") from exc
    if isinstance(private, rsa.RSAPrivateKey):
        if private.key_size < 1024:
            raise InvalidKey(f"{domain}/{selector}: RSA keys need at least 1024 bits")
    elif not isinstance(private, ed25519.Ed25519PrivateKey):
        raise InvalidKey(f"{domain}/{selector}: only RSA and Ed25519 keys sign DKIM")
    return Key(domain.lower(), selector, private)


def load_keys(directory: Path) -> dict[str, Key]:
    """The signing key of each domain in `directory` (`<domain>/<selector>.pem`); of several
    selectors of one domain, the most recently written file (so a new key takes over)."""
    keys: dict[str, tuple[float, Key]] = {}
    for path in sorted(directory.glob("*/*.pem")):
        try:
            pem = path.read_bytes()
        except PermissionError:
            # Usually a 0600 key of root's beside a container's uid 10001.
            raise InvalidKey(
                f"{path} is not readable by uid {os.getuid()}: make it so"
                f" (`chgrp {os.getgid()} KEY; chmod 0640 KEY`)"
            ) from None
        key = load_key(path.parent.name, path.stem, pem)
        mtime = path.stat().st_mtime
        if key.domain not in keys or mtime >= keys[key.domain][0]:
            keys[key.domain] = (mtime, key)
    return {domain: key for domain, (_, key) in keys.items()}


def _relaxed_header(name: bytes, value: bytes) -> bytes:
    if b"\r\n" in value:
        value = _FOLD.sub(b"", value)
    if b"\t" in value or b"  " in value:
        value = _WSP.sub(b" ", value)
    return name.strip().lower() + b":" + value.strip()


def relaxed_body(body: bytes) -> bytes:
    """Runs of spaces and tabs as one space, none at a line's end, no empty lines at the
    end, and one CRLF after the last line (RFC 6376 3.4.4), over the whole body at once."""
    body = _LINE_END_WSP.sub(b"", _WSP.sub(b" ", body))
    while body.endswith(b"\r\n\r\n"):
        body = body[:-2]
    if not body or body == b"\r\n":
        return b""
    return body if body.endswith(b"\r\n") else body + b"\r\n"


def _headers(head: bytes) -> list[tuple[bytes, bytes]]:
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return fields


def sign(message: bytes, key: Key, now: int) -> bytes:
    """The `DKIM-Signature:` header (folded, ending in CRLF) to put before `message`."""
    unsigned = prepare(message, key, now)
    return unsigned.header(signature(key, unsigned.data))


@dataclass(frozen=True, slots=True)
class Unsigned:
    """A signature's tags, and the canonical bytes its key signs."""

    tags: str
    data: bytes

    def header(self, raw: bytes) -> bytes:
        """The `DKIM-Signature:` header with `raw`, what the key made of `data`."""
        b = base64.b64encode(raw).decode()
        return f"DKIM-Signature: {_fold(self.tags + b)}\r\n".encode()


def prepare(message: bytes, key: Key, now: int) -> Unsigned:
    """Everything of a signature but the key's arithmetic (`signature`), so that can be
    done elsewhere (it lets go of the GIL)."""
    head, _, body = message.partition(b"\r\n\r\n")
    by_name: dict[str, list[tuple[bytes, bytes]]] = {}
    for field in _headers(head):
        by_name.setdefault(field[0].strip().lower().decode(), []).append(field)
    names = [n for n in SIGNED if n in by_name] + [n for n in OVERSIGNED if n in by_name]
    # Each name takes the last instance not yet used (RFC 6376 5.4.2); none left: empty.
    used: dict[str, int] = {}
    signed = b""
    for name in names:
        instances = by_name[name]
        taken = used.get(name, 0)
        used[name] = taken + 1
        if taken < len(instances):
            field = instances[len(instances) - 1 - taken]
            signed += _relaxed_header(*field) + b"\r\n"
    body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode()
    tags = (
        f"v=1; a={key.algorithm}; c=relaxed/relaxed; d={key.domain}; s={key.selector};"
        f" t={now}; h={':'.join(names)}; bh={body_hash}; b="
    )
    # Signed as it will be sent (folded; verifiers canonicalise what they receive), b= empty.
    return Unsigned(tags, signed + _relaxed_header(b"DKIM-Signature", _fold(tags).encode()))


def signature(key: Key, data: bytes) -> bytes:
    """The key's signature of `data` (from `prepare`)."""
    if isinstance(key.private, ed25519.Ed25519PrivateKey):
        return key.private.sign(hashlib.sha256(data).digest())
    return key.private.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _fold(tags: str) -> str:
    """Each tag on a line of its own, h= broken after its colons and b= in pieces, so that
    no line passes 78 characters (folding whitespace is allowed there; verifiers unfold)."""
    lines: list[str] = []
    for tag in tags.split("; "):
        if tag.startswith("h="):
            line, *names = tag.split(":")
            for name in names:
                if len(line) + len(name) > 70:
                    lines.append(line + ":")
                    line = name
                else:
                    line += ":" + name
            lines.append(line + ";")
        elif tag.startswith("b="):  # no spaces in it: pieces of 72
            lines += [tag[i : i + 72] for i in range(0, len(tag), 72)]
        else:
            lines.append(tag + ";")
    return "\r\n\t".join(lines)
