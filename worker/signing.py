"""DKIM signing in the worker: the keys of `DKIM_KEYS_DIR` (core/dkim.py), looked at again
when the directory changes, so a new or rotated key signs from the next message on."""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from core import dkim

log = structlog.get_logger()


def _stamp(directory: Path) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((str(p), p.stat().st_mtime) for p in directory.glob("*/*.pem")))


class Signer:
    """Signs each message whose From domain has a key; others go unsigned."""

    def __init__(self, directory: Path, check_every: float = 30.0) -> None:
        self.directory = directory
        self.check_every = check_every
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

    def sign(self, from_address: str, message: bytes) -> bytes:
        if time.monotonic() - self._checked >= self.check_every:
            self._refresh()
        key = self.keys.get(from_address.rpartition("@")[2].lower())
        if key is None:
            return message
        return dkim.sign(message, key, int(time.time())) + message
