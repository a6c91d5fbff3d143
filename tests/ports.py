"""Ports for the servers the tests start: a free one, and waiting until one listens."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, what: str, log: Callable[[], str], timeout: float = 15) -> None:
    """Return once 127.0.0.1:`port` accepts connections; fail with `what`'s log if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start: {log()[-2000:]}")
