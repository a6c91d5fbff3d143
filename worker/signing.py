"""DKIM signing in the worker: the keys of `DKIM_KEYS_DIR` (core/dkim.py), looked at again
when the directory changes, so a new or rotated key signs from the next message on.

The arithmetic of an RSA key is done in a thread of the signer's own: OpenSSL (through
`cryptography`) lets go of the GIL, so a worker process signs on a second core while its
event loop goes on with the other messages."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from core import dkim

log = structlog.get_logger()


def _stamp(directory: Path) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((str(p), p.stat().st_mtime) for p in directory.glob("*/*.pem")))


class Signer:
    """Signs each message whose From domain has a key; others go unsigned."""

    def __init__(self, directory: Path, check_every: float = 30.0, threads: int = 2) -> None:
        self.directory = directory
        self.check_every = check_every
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dkim")
        self.keys = dkim.load_keys(directory)  # a bad key at start stops the worker
        self._stamp = _stamp(directory)
        self._checked = time.monotonic()
        log.info("dkim_keys_loaded", domains=sorted(self.keys), dir=str(directory))

    def _refresh(self) -> None:
        self._checked = time.monotonic()
        try:
            stamp = _stamp(self.directory)
            if stamp == self._stamp:
                return
            self.keys = dkim.load_keys(self.directory)
            self._stamp = stamp
            log.info("dkim_keys_loaded", domains=sorted(self.keys), dir=str(self.directory))
        except (OSError, dkim.InvalidKey) as exc:  # keep signing with the keys we have
            log.error("dkim_keys_not_loaded", error=str(exc), dir=str(self.directory))  # noqa: TRY400

    def _key(self, from_address: str) -> dkim.Key | None:
        if time.monotonic() - self._checked >= self.check_every:
            self._refresh()
        return self.keys.get(from_address.rpartition("@")[2].lower())

    async def sign(self, from_address: str, message: bytes) -> bytes:
        """`message` with its DKIM-Signature first, if its From domain has a key; signed in
        the signer's threads."""
        key = self._key(from_address)
        if key is None:
            return message
        unsigned = dkim.prepare(message, key, int(time.time()))
        if key.algorithm == "rsa-sha256":  # 0.4 ms of arithmetic, without the GIL
            loop = asyncio.get_running_loop()
            raw = await loop.run_in_executor(self._threads, dkim.signature, key, unsigned.data)
        else:  # Ed25519 signs in 40 µs: less than the way to a thread and back
            raw = dkim.signature(key, unsigned.data)
        return unsigned.header(raw) + message

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
