"""Who may use the console: OpenID Connect sign-in (authorization code with PKCE; Authlib
checks the state, the nonce, and the ID token's signature, issuer, audience and expiry),
`CONSOLE_ALLOWED`, a signed session cookie, and a CSRF token on every change."""

from __future__ import annotations

import secrets
import warnings
from typing import Any

import structlog
from authlib.deprecate import AuthlibDeprecationWarning
from fastapi import Request
from joserfc.errors import JoseError

from api import roles
from core.clock import utcnow
from core.roles import Allowed, Role
from db import audit
from ops import sessions

with warnings.catch_warnings():
    # Authlib's client for Starlette imports its own (deprecated) httpx module; said on
    # stderr at every start, it would be the one line of the API's log that is not JSON.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.starlette_client import OAuth, OAuthError

log = structlog.get_logger()

CSRF_FIELD = "csrf"
SESSION_KEY = "sid"  # where the cookie keeps the session's token (ops/sessions.py)
CSRF_HEADER = "x-csrf-token"


class Refused(Exception):
    """A sign-in that does not get a session; the message is shown to the person."""


class NotSignedIn(Exception):
    """A console page asked for without a session."""


class BadCsrf(Exception):
    """A change without the session's CSRF token."""


class Auth:
    def __init__(self, issuer: str, client_id: str, client_secret: str, allowed: str) -> None:
        self.allowed = Allowed.parse(allowed)
        self.oauth = OAuth()
        self.oauth.register(
            "oidc",
            client_id=client_id,
            client_secret=client_secret,
            server_metadata_url=f"{issuer}/.well-known/openid-configuration",
            client_kwargs={"scope": "openid email", "code_challenge_method": "S256"},
        )

    async def start(self, request: Request, redirect_uri: str) -> Any:
        """The redirect to the provider (state, nonce and PKCE verifier kept in the session)."""
        return await self.oauth.oidc.authorize_redirect(request, redirect_uri)

    async def finish(self, request: Request) -> str:
        """The signed-in address, after the provider sent the person back; Refused when the
        answer does not hold (state, token, signature, audience, nonce) or the address is
        not allowed."""
        try:
            token = await self.oauth.oidc.authorize_access_token(request)
        except (OAuthError, JoseError, ValueError, KeyError) as exc:
            log.warning("console_signin_refused", reason=type(exc).__name__, error=str(exc))
            raise Refused("The sign-in could not be verified. Try again.") from None
        claims = dict(token.get("userinfo") or {})
        if not claims.get("email"):  # a provider that keeps it for the userinfo endpoint
            try:
                more = await self.oauth.oidc.userinfo(token=token)
            except (OAuthError, ValueError, OSError) as exc:
                log.warning("console_signin_refused", reason="userinfo", error=str(exc))
                raise Refused("The sign-in could not be verified. Try again.") from None
            if more.get("sub") == claims.get("sub"):
                claims.update(more)
        email = str(claims.get("email") or "").lower()
        if not email or claims.get("email_verified") is False:
            log.warning("console_signin_refused", reason="no verified email")
            raise Refused("The provider did not give a verified email address.")
        if email not in self.allowed:
            log.warning("console_signin_refused", reason="not allowed", email=email)
            raise Refused(f"{email} may not use this console.")
        log.info("console_signed_in", email=email)
        return email


async def user(request: Request) -> str:
    """The signed-in address: the session the cookie names is live in the database and its
    person is still in CONSOLE_ALLOWED; NotSignedIn otherwise (the cookie is cleared, and a
    session of someone no longer allowed is ended). Forbidden when the person's role (from
    CONSOLE_ALLOWED, as it is now) is below what the page needs."""
    token = request.session.get(SESSION_KEY)
    if not isinstance(token, str):
        raise NotSignedIn
    now = utcnow()
    allowed: Allowed = request.app.state.console_auth.allowed
    role: Role | None = None
    async with request.app.state.pool.acquire() as conn:
        email = await sessions.person(conn, token, now)
        if email is not None and (role := allowed.role(email)) is None:
            await sessions.end(conn, token, "no longer in CONSOLE_ALLOWED", now)
            log.warning("console_session_ended", email=email, why="not allowed")
            email = None
    if email is None or role is None:
        request.session.clear()
        raise NotSignedIn
    request.state.user = email
    request.state.role = role
    roles.require(request, role)
    audit.acting(email, "console")
    return email


def csrf_token(request: Request) -> str:
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = request.session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


async def check_csrf(request: Request) -> None:
    """A change must carry the session's token (a form field or, for htmx, a header)."""
    expected = request.session.get(CSRF_FIELD)
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not isinstance(expected, str) or not given or not secrets.compare_digest(expected, given):
        raise BadCsrf
