"""The web console at `/`: server-rendered pages (Jinja2) with htmx, over the same use cases
(`ops/`) as the CLI and the REST API. Live parts poll every 2 s; what they show comes from
one shared read per interval (`ops.status.Shared`), however many pages are open."""

from __future__ import annotations

from pathlib import Path

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import roles
from api.console import inbox, pages, webhooks
from api.console.auth import Auth, BadCsrf, NotSignedIn
from runtime.settings import ApiSettings

log = structlog.get_logger()

HERE = Path(__file__).parent
SESSION_COOKIE = "console_session"
STALE_FORM = "This form has expired or did not come from the console: reload the page."

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
# Not the console: the REST API and its docs page (which loads its own scripts).
_NOT_CONSOLE = ("/api/", "/docs", "/metrics", "/healthz")


class SecurityHeaders:
    """CSP (no inline scripts or styles anywhere in the console) and friends on every
    console response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope["path"]).startswith(_NOT_CONSOLE):
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _HEADERS
            await send(message)

        await self.app(scope, receive, sending)


def install(app: FastAPI, settings: ApiSettings) -> None:
    """Mount the console on `app` (or, without OIDC_ISSUER, a page saying how to turn it on)."""
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    if not settings.console_on:

        async def console_off(_request: Request) -> HTMLResponse:
            return HTMLResponse(pages.templates.get_template("off.html").render(), status_code=200)

        app.add_route("/", console_off, methods=["GET"], include_in_schema=False)

        return
    assert settings.oidc_issuer
    assert settings.oidc_client_id
    assert settings.oidc_client_secret
    app.state.console_auth = Auth(
        settings.oidc_issuer,
        settings.oidc_client_id,
        settings.oidc_client_secret.get_secret_value(),
        settings.console_allowed,
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret.get_secret_value(),
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age_seconds,
        same_site="lax",
        https_only=settings.session_cookie_secure,
    )

    @app.exception_handler(NotSignedIn)
    async def _signin(request: Request, _exc: NotSignedIn) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/signin"})
        return RedirectResponse("/signin", status_code=303)

    @app.exception_handler(BadCsrf)
    async def _csrf(request: Request, _exc: BadCsrf) -> Response:
        return pages.problem(
            request,
            403,
            STALE_FORM,
        )

    @app.exception_handler(roles.Forbidden)
    async def _forbidden(request: Request, exc: roles.Forbidden) -> Response:
        log.warning("console_forbidden", user=getattr(request.state, "user", None),
                    path=request.url.path, have=exc.have.value, need=exc.need.value)  # fmt: skip
        return pages.problem(request, 403, f"Not allowed: {exc}.")

    app.include_router(pages.router)
    app.include_router(webhooks.router)
    app.include_router(inbox.router)
