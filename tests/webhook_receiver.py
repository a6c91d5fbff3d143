"""A webhook receiver for the tests: a real HTTP server (the standard library's, in a
thread) that checks every POST with the `standardwebhooks` package, the verifier a
receiver would use, not with the product's own signer; it can answer 500 to the first
tries of each message and be stopped and started on the same port."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    msg_id: str
    payload: dict[str, Any]


@dataclass
class Receiver:
    port: int
    secret: str = ""
    fail_first: int = 0  # answer 500 to this many tries of each message
    verified: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # signatures that did not verify
    truncated: int = 0  # requests cut short (a sender killed mid-POST)
    tries: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request: nothing arrived
                    with receiver.lock:
                        receiver.truncated += 1
                    return
                try:
                    payload = Webhook(receiver.secret).verify(body, dict(self.headers.items()))
                except WebhookVerificationError as exc:
                    with receiver.lock:
                        receiver.refused.append(f"{exc}: {dict(self.headers.items())}")
                    self.send_response(401)
                    self.end_headers()
                    return
                mid = self.headers["webhook-id"]
                with receiver.lock:
                    receiver.tries[mid] += 1
                    fail = receiver.tries[mid] <= receiver.fail_first
                    if not fail:
                        receiver.verified.append(Received(mid, payload))
                self.send_response(500 if fail else 200)
                self.end_headers()
                self.wfile.write(b"not yet" if fail else b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def by_type(self, kind: str) -> list[Received]:
        with self.lock:
            return [r for r in self.verified if r.payload["type"] == kind]

    def ids_per_event(self) -> dict[int, set[str]]:
        """Each event's webhook-ids among the verified deliveries."""
        out: dict[int, set[str]] = {}
        with self.lock:
            for r in self.verified:
                out.setdefault(r.payload["data"]["event_id"], set()).add(r.msg_id)
        return out
