"""Roles: their order, CONSOLE_ALLOWED with roles, and the one table of what each route
needs, checked against the application's routes."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from api import roles
from api.app import create_app
from api.rest.common import Actor, authenticated
from core.roles import Allowed, Role
from runtime.settings import ApiSettings

BASE = {"database_url": "postgresql://x/y", "amqp_url": "amqp://guest:guest@x/"}
CONSOLE = {"oidc_issuer": "https://accounts.google.com", "oidc_client_id": "id",
           "oidc_client_secret": "secret", "console_allowed": "@acme.test",
           "session_secret": "s" * 32}  # fmt: skip


def test_each_role_allows_what_the_ones_below_it_do() -> None:
    assert [r for r in Role if Role.VIEWER.allows(r)] == [Role.VIEWER]
    assert [r for r in Role if Role.OPERATOR.allows(r)] == [Role.VIEWER, Role.OPERATOR]
    assert all(Role.ADMIN.allows(r) for r in Role)
    assert Role.parse(" Admin ") is Role.ADMIN
    with pytest.raises(ValueError, match=r"'root' is not a role \(one of viewer, operator"):
        Role.parse("root")


def test_console_allowed_carries_roles_and_bare_entries_are_operators() -> None:
    allowed = Allowed.parse("@acme.test:viewer, boss@acme.test:ADMIN ana@x.test @ops.test")
    assert allowed.role("someone@acme.test") is Role.VIEWER
    assert allowed.role("Boss@Acme.test") is Role.ADMIN  # the address wins over its domain
    assert allowed.role("ana@x.test") is Role.OPERATOR
    assert allowed.role("bo@ops.test") is Role.OPERATOR
    for refused in ("eve@x.test", "a@evil.acme.test", "acme.test", "", None, "@acme.test"):
        assert allowed.role(refused) is None, refused
        assert refused not in allowed


@pytest.mark.parametrize(
    ("text", "named"),
    [("ana@x.test:root", "'ana@x.test:root'"), ("@:admin", "'@:admin'"),
     ("nobody", "'nobody'"), ("a@b@c:viewer", "'a@b@c:viewer'")],
)  # fmt: skip
def test_a_bad_console_allowed_entry_is_named_at_start(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Allowed.parse(text)
    with pytest.raises(ValidationError, match=named):
        ApiSettings(**BASE, **{**CONSOLE, "console_allowed": text})  # type: ignore[arg-type]


@given(st.emails(), st.sampled_from(list(Role)))
def test_an_address_gets_the_role_its_entry_gives(email: str, role: Role) -> None:
    assert Allowed.parse(f"{email}:{role}").role(email.upper()) is role


@pytest.mark.parametrize("console", [False, True])
def test_every_route_of_the_application_has_its_role(console: bool) -> None:
    settings = ApiSettings(**BASE, **(CONSOLE if console else {}))  # type: ignore[arg-type]
    app = create_app(settings)  # verify() runs here
    keys = {key for key, _ in roles.routes(app)}
    assert keys == set(roles.REST) | (set(roles.CONSOLE) if console else set())
    # The console's actions need more than reading; every admin route is an admin's.
    assert all(roles.CONSOLE[k] is not Role.VIEWER for k in roles.CONSOLE if k[:4] == "POST"
               and k != "POST /auth/logout")  # fmt: skip
    assert roles.need("HEAD", "/api/v1/status") is Role.VIEWER


def test_a_route_without_a_role_or_without_a_caller_stops_the_start() -> None:
    app = FastAPI()

    @app.get("/api/v1/secret")
    async def secret(_who: Actor) -> None:
        return None

    with pytest.raises(RuntimeError, match=r"GET /api/v1/secret: no role declared"):
        roles.verify(app, (authenticated,), console=False)

    app = FastAPI()

    @app.get("/api/v1/status")
    async def status() -> None:  # needs a viewer, never asks who calls
        return None

    with pytest.raises(RuntimeError, match=r"GET /api/v1/status: needs viewer but never asks"):
        roles.verify(app, (authenticated,), console=False)

    app = FastAPI()

    @app.get("/healthz")
    async def healthz(_who: Actor) -> None:  # public, yet it would refuse the anonymous
        return None

    with pytest.raises(RuntimeError, match=r"GET /healthz: declared public but asks"):
        roles.verify(app, (authenticated,), console=False)


def test_may_answers_for_the_console() -> None:
    assert roles.may(Role.VIEWER, "GET", "/leads")
    assert not roles.may(Role.VIEWER, "POST", "/leads/{lead_id}/{action}")
    assert roles.may(Role.OPERATOR, "POST", "/leads/{lead_id}/{action}")
    assert not roles.may(Role.OPERATOR, "POST", "/dead-letters/purge")
    assert roles.may(Role.ADMIN, "POST", "/dead-letters/purge")
    assert not roles.may(None, "GET", "/")
