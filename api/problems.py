"""Errors as RFC 9457 problem details (`application/problem+json`), naming the field."""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ops.definitions import Conflict, Invalid
from ops.leads import NotFound
from ops.senders import InvalidLimit

log = structlog.get_logger()

MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """An answer other than success: status, a short title and what exactly is wrong."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra


def response(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "request")


def install(app: FastAPI) -> None:
    """Answer every error as a problem."""

    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        return response(exc.status, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        first = errors[0] if errors else {"field": "request", "message": "invalid"}
        return response(
            422, "Invalid request", f"{first['field']}: {first['message']}", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        return response(exc.status_code, str(exc.detail), str(exc.detail), headers)

    # What the use cases refuse, the same way on every route.
    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return response(404, "Not found", str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(_request: Request, exc: Conflict) -> JSONResponse:
        return response(409, "Conflict", str(exc))

    @app.exception_handler(Invalid)
    async def _refused(_request: Request, exc: Invalid) -> JSONResponse:
        errors = [{"field": exc.field, "message": str(exc)}]
        return response(422, "Invalid request", str(exc), errors=errors)

    @app.exception_handler(InvalidLimit)
    async def _limit(_request: Request, exc: InvalidLimit) -> JSONResponse:
        return response(422, "Invalid request", str(exc))

    @app.exception_handler(asyncpg.DataError)
    async def _data(_request: Request, exc: asyncpg.DataError) -> JSONResponse:
        # A value the database cannot take (a NUL character, a number out of range): the
        # request's fault, whichever field it came in.
        return response(422, "Invalid request", f"a value the database cannot store: {exc}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request_failed", path=request.url.path, error=repr(exc))
        return response(500, "Internal error", "the request failed; the log says why")
