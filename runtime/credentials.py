"""Passwords at rest: encrypted with CREDENTIALS_KEY (Fernet from `cryptography`: AES-128-CBC
with an HMAC-SHA256, so a changed or foreign ciphertext is refused, never decrypted to junk).

CREDENTIALS_KEY is any secret of at least 32 bytes (`openssl rand -base64 48`); several,
comma-separated, rotate keys: the first encrypts, every one decrypts.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

MIN_KEY_BYTES = 32


class CredentialsError(ValueError):
    """No key to encrypt with, or a ciphertext no configured key opens."""


def _fernet(secret: str) -> Fernet:
    if len(secret.encode()) < MIN_KEY_BYTES:
        raise CredentialsError(f"CREDENTIALS_KEY needs at least {MIN_KEY_BYTES} bytes")
    digest = hashlib.sha256(b"email-scheduler credentials\0" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


class Box:
    def __init__(self, keys: str) -> None:
        secrets = [k.strip() for k in keys.split(",") if k.strip()]
        if not secrets:
            raise CredentialsError("CREDENTIALS_KEY is not set")
        self._fernet = MultiFernet([_fernet(s) for s in secrets])

    def seal(self, password: str) -> bytes:
        return self._fernet.encrypt(password.encode())

    def open(self, sealed: bytes) -> str:
        try:
            return self._fernet.decrypt(sealed).decode()
        except InvalidToken:
            raise CredentialsError(
                "a stored password does not open with CREDENTIALS_KEY (a different key?)"
            ) from None
