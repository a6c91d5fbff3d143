"""The HTTP/1.1 client of the deliverer: POSTs over keep-alive connections to one origin, and
nothing a webhook does not need (no redirects, no proxies, no cookies, no compression).

- Only where it may: each new connection resolves the host anew and checks every address
  it gets (`core.webhooks.target_allowed`) before connecting to one of them, so a name that
  comes to resolve to a private address (DNS rebinding) is refused then.
- The answer is written by a stranger: its head is capped at MAX_HEAD bytes, a body is read
  to keep its connection only up to MAX_DRAIN bytes (a longer one closes it), and what is
  kept of it is its first `keep` bytes; anything malformed is a `ProtocolError`, and the
  connection is not used again. The caller bounds the whole POST in time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from dataclasses import dataclass

from yarl import URL

from core.webhooks import target_allowed

MAX_HEAD = 64 * 1024
MAX_DRAIN = 1024 * 1024

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class TargetRefused(Exception):
    """The endpoint's host resolves to an address a deliverer may not connect to."""


class ProtocolError(Exception):
    """The answer is not HTTP/1.x as a server writes it."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    location: str  # of a redirect, else ""
    head: bytes  # the first bytes of the body


class _Stale(Exception):
    """A kept connection the server had closed: nothing was read from it."""


class Origin:
    """Keep-alive connections to one scheme://host:port, as many as are in use at once."""

    def __init__(
        self, url: URL, *, allow_private: bool, user_agent: str, ssl_context: ssl.SSLContext
    ) -> None:
        if url.scheme not in ("http", "https") or not url.raw_host:
            raise ValueError(f"not an http(s) URL: {url}")
        self.host = url.raw_host
        self.tls = url.scheme == "https"
        self.port = url.port or (443 if self.tls else 80)
        self.allow_private = allow_private
        self.ssl_context = ssl_context
        shown = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != (443 if self.tls else 80):
            shown = f"{shown}:{self.port}"
        self._fixed = f"Host: {shown}\r\nUser-Agent: {user_agent}\r\n".encode("ascii")
        self.idle: list[Stream] = []

    def request(self, url: URL, headers: dict[str, str], body: bytes) -> bytes:
        """The bytes of a POST of `body` to `url` (of this origin)."""
        lines = [f"POST {url.raw_path_qs or '/'} HTTP/1.1\r\n"]
        lines += [f"{k}: {v}\r\n" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        first, *rest = lines
        return first.encode("ascii") + self._fixed + "".join(rest).encode("ascii") + body

    async def post(self, request: bytes, keep: int) -> Answer:
        """Send `request` (from `request`) and read the answer, on a kept connection if
        there is one (once more on a new one if the server had closed it)."""
        while self.idle:
            stream = self.idle.pop()
            if stream[0].at_eof() or stream[1].is_closing():
                stream[1].close()
                continue
            try:
                return await self._exchange(stream, request, keep, reused=True)
            except _Stale:
                continue
        return await self._exchange(await self._connect(), request, keep, reused=False)

    async def _exchange(self, stream: Stream, request: bytes, keep: int, *, reused: bool) -> Answer:
        reader, writer = stream
        done = False
        try:
            try:
                writer.write(request)
                await writer.drain()
                answer, reusable = await _read_answer(reader, keep)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                if reused and not _got_anything(exc):
                    raise _Stale from exc
                raise
            done = reusable
            return answer
        finally:
            if done:
                self.idle.append(stream)
            else:
                writer.close()

    async def _connect(self) -> Stream:
        loop = asyncio.get_running_loop()
        found = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        if not found:
            raise OSError(f"{self.host} resolves to no address")
        for *_, sockaddr in found:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            if not target_allowed(address, allow_private=self.allow_private):
                raise TargetRefused(
                    f"{self.host} resolves to {address}, not a public address"
                    " (WEBHOOK_ALLOW_PRIVATE=true)"
                )
        error: OSError | None = None
        for family, _, proto, _, sockaddr in found:
            try:
                return await asyncio.open_connection(
                    str(sockaddr[0]), self.port, family=family, proto=proto,
                    ssl=self.ssl_context if self.tls else None,
                    server_hostname=self.host if self.tls else None, limit=MAX_HEAD,
                )  # fmt: skip
            except OSError as exc:
                error = exc
        assert error is not None
        raise error

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


def _got_anything(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.IncompleteReadError) and bool(exc.partial)


async def _read_answer(reader: asyncio.StreamReader, keep: int) -> tuple[Answer, bool]:
    """The answer to one request, and whether its connection may carry the next."""
    try:
        return await _read(reader, keep)
    except asyncio.LimitOverrunError as exc:
        raise ProtocolError(f"a line of the answer over {MAX_HEAD} bytes") from exc


async def _read(reader: asyncio.StreamReader, keep: int) -> tuple[Answer, bool]:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head[:-4].split(b"\r\n")
        version, _, rest = status_line.partition(b" ")
        code_text = rest[:3]
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or not code_text.isdigit():
            raise ProtocolError(f"not an HTTP status line: {status_line[:80]!r}")
        status = int(code_text)
        if status < 100:
            raise ProtocolError(f"not an HTTP status: {status}")
        if status >= 200 or status == 101:
            break  # 1xx but 101 are informational: the answer follows
    fields: dict[bytes, bytes] = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"not a header line: {line[:80]!r}")
        key = name.lower()
        value = value.strip()
        if key in fields and key == b"content-length" and fields[key] != value:
            raise ProtocolError("two content-lengths")
        fields[key] = fields[key] + b", " + value if key in fields else value
    reusable = version == b"HTTP/1.1" and b"close" not in fields.get(b"connection", b"").lower()
    location = fields.get(b"location", b"").decode("latin-1")[:1000] if status < 400 else ""
    if status in (101, 204, 304):
        return Answer(status, location, b""), reusable and status != 101
    coding = fields.get(b"transfer-encoding", b"").lower()
    if coding:
        if coding.rsplit(b",", 1)[-1].strip() != b"chunked":
            return Answer(status, location, await _until_eof(reader, keep)), False
        body, whole = await _chunked(reader, keep)
        return Answer(status, location, body), reusable and whole
    length_text = fields.get(b"content-length")
    if length_text is None:
        return Answer(status, location, await _until_eof(reader, keep)), False
    if not length_text.isdigit():
        raise ProtocolError(f"not a content-length: {length_text[:40]!r}")
    length = int(length_text)
    if length > MAX_DRAIN:
        return Answer(status, location, await _until_eof(reader, min(keep, length))), False
    body = await reader.readexactly(length)
    return Answer(status, location, body[:keep]), reusable


async def _until_eof(reader: asyncio.StreamReader, keep: int) -> bytes:
    """The first `keep` bytes of a body that ends with the connection (which is not kept)."""
    kept = b""
    while len(kept) < keep and (more := await reader.read(keep - len(kept))):
        kept += more
    return kept


async def _chunked(reader: asyncio.StreamReader, keep: int) -> tuple[bytes, bool]:
    """The first `keep` bytes of a chunked body, and whether it was read to its end (up to
    MAX_DRAIN bytes; a longer one is left, with its connection)."""
    kept = bytearray()
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size_text = size_line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise ProtocolError(f"not a chunk size: {size_text[:40]!r}") from exc
        if size < 0:
            raise ProtocolError("a negative chunk size")
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return bytes(kept), True
        total += size
        if total > MAX_DRAIN:
            return bytes(kept), False
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise ProtocolError("a chunk not ended by CRLF")
        if len(kept) < keep:
            kept += chunk[: min(size, keep - len(kept))]
