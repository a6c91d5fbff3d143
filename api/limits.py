"""How much of a request body the API reads: API_MAX_BODY_BYTES for any body (an upload is
streamed to a spool file as it comes), API_MAX_JSON_BYTES for a JSON one (which is parsed
whole). A body over its limit is answered 413 before it is read on (by its Content-Length)
or as soon as the limit is crossed; nothing it carried is acted on."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import response


class TooLarge(HTTPException):
    """A body over its limit. An HTTPException, so a route reading its body passes it on
    (FastAPI turns other errors raised while reading into a 400)."""

    def __init__(self, limit: int, what: str) -> None:
        super().__init__(413, f"{what} larger than {limit:,} bytes ({_mib(limit)})")


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


class BodyLimit:
    """ASGI middleware holding every request body to its limit."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_json_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_bytes = max_json_bytes

    def limit(self, scope: Scope) -> tuple[int, str]:
        headers = dict(scope.get("headers") or [])
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if kind == b"application/json" or kind.endswith(b"+json"):
            return min(self.max_json_bytes, self.max_bytes), "a JSON body"
        return self.max_bytes, "a body"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, what = self.limit(scope)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            detail = f"{what} larger than {limit:,} bytes ({_mib(limit)})"
            if not length.isdigit():
                detail = f"Content-Length {length[:40].decode('latin-1')!r} is not a number"
            problem = response(413, "Request body too large", detail, {"connection": "close"})
            await problem(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLarge(limit, what)
            return message

        await self.app(scope, limited, send)


def install(app: FastAPI, *, max_bytes: int, max_json_bytes: int) -> None:
    """Hold every request of `app` to the limits."""
    app.add_middleware(BodyLimit, max_bytes=max_bytes, max_json_bytes=max_json_bytes)

    @app.exception_handler(TooLarge)
    async def _too_large(_request: Request, exc: TooLarge) -> JSONResponse:
        return response(413, "Request body too large", str(exc.detail), {"connection": "close"})
