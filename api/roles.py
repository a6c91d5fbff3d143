"""The role every route and console page needs, in one table.

A route missing from the table, an entry without a route, or a route that needs a role but
does not ask who is calling stops the application at start (`verify`). A request whose
caller's role is below the route's need is refused with 403 before the route runs, so a
refused request changes nothing (`require`, called by the REST bearer check and the console
sign-in check)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from core.roles import Role

VIEWER, OPERATOR, ADMIN = Role.VIEWER, Role.OPERATOR, Role.ADMIN
PUBLIC = None  # no sign-in: health, the unsubscribe pages, signing in and out

REST: dict[str, Role | None] = {
    "GET /api/v1/leads": VIEWER,
    "GET /api/v1/leads/{lead_id}": VIEWER,
    "POST /api/v1/leads/{lead_id}/{action}": OPERATOR,
    "GET /api/v1/suppressions": VIEWER,
    "POST /api/v1/suppressions": OPERATOR,
    # lifting a suppression overrides a person's opt-out
    "DELETE /api/v1/suppressions/{entry}": ADMIN,
    "POST /api/v1/replies": OPERATOR,
    "POST /api/v1/unsubscribes": OPERATOR,
    "GET /api/v1/sequences": VIEWER,
    "POST /api/v1/sequences": OPERATOR,
    "GET /api/v1/sequences/{seq_id}": VIEWER,
    "PATCH /api/v1/sequences/{seq_id}": OPERATOR,
    "POST /api/v1/sequences/{seq_id}/leads": OPERATOR,
    "POST /api/v1/sequences/{seq_id}/{action}": OPERATOR,
    "GET /api/v1/sequences/{seq_id}/steps": VIEWER,
    "PUT /api/v1/sequences/{seq_id}/steps/{position}": OPERATOR,
    "POST /api/v1/emails": OPERATOR,
    "GET /api/v1/senders": VIEWER,
    "POST /api/v1/senders": ADMIN,
    "PATCH /api/v1/senders/{sender_id}": ADMIN,
    "POST /api/v1/senders/{sender_id}/resume": ADMIN,
    "GET /api/v1/status": VIEWER,
    "POST /api/v1/webhooks": ADMIN,
    "GET /api/v1/webhooks": ADMIN,
    "DELETE /api/v1/webhooks/{endpoint_id}": ADMIN,
    "POST /api/v1/webhooks/{endpoint_id}/test": ADMIN,
    "GET /api/v1/webhooks/{endpoint_id}/deliveries": ADMIN,
    "POST /api/v1/webhooks/{endpoint_id}/replay": ADMIN,
    "GET /api/v1/replies": VIEWER,
    "GET /api/v1/replies/{reply_id}": VIEWER,
    "POST /api/v1/replies/{reply_id}/handled": OPERATOR,
    "POST /api/v1/replies/{reply_id}/answer": OPERATOR,
    "DELETE /api/v1/people/{email}": ADMIN,
    "GET /api/v1/audit": ADMIN,
    "GET /api/v1/tokens": ADMIN,
    "POST /api/v1/tokens": ADMIN,
    "DELETE /api/v1/tokens/{name}": ADMIN,
    "GET /metrics": VIEWER,  # the status gauges name senders and sequences
    "GET /healthz": PUBLIC,
    "GET /u/{token}": PUBLIC,
    "GET /u": PUBLIC,
    "POST /u/{token}": PUBLIC,
    "POST /u": PUBLIC,
}

CONSOLE: dict[str, Role | None] = {
    "GET /signin": PUBLIC,
    "GET /auth/login": PUBLIC,
    "GET /auth/callback": PUBLIC,
    "POST /auth/logout": PUBLIC,  # ends the session the cookie names, whoever holds it
    "GET /": VIEWER,
    "GET /live/overview": VIEWER,
    "GET /sequences": VIEWER,
    "POST /sequences": OPERATOR,
    "GET /sequences/{seq_id}": VIEWER,
    "POST /sequences/{seq_id}": OPERATOR,
    "POST /sequences/{seq_id}/status": OPERATOR,
    "POST /sequences/{seq_id}/preview": OPERATOR,
    "POST /sequences/{seq_id}/steps": OPERATOR,
    "GET /leads": VIEWER,
    "GET /leads/{lead_id}": VIEWER,
    "POST /leads/{lead_id}/{action}": OPERATOR,
    "GET /import": OPERATOR,
    "POST /import": OPERATOR,
    "GET /import/rejected/{token}.csv": OPERATOR,
    "GET /emails/new": OPERATOR,
    "POST /emails": OPERATOR,
    "GET /dead-letters": VIEWER,
    "POST /dead-letters/replay": OPERATOR,
    "POST /dead-letters/purge": ADMIN,
    "GET /suppressions": VIEWER,
    "POST /suppressions": OPERATOR,
    "POST /suppressions/remove": ADMIN,
    "GET /senders": VIEWER,
    "POST /senders/{sender_id}": ADMIN,
    "POST /senders/{sender_id}/guard": ADMIN,
    "GET /senders/{sender_id}/check": VIEWER,
    "POST /senders/{sender_id}/resume": ADMIN,
    "GET /inbox": VIEWER,
    "GET /inbox/{reply_id}": VIEWER,
    "POST /inbox/{reply_id}/handled": OPERATOR,
    "POST /inbox/{reply_id}/answer": OPERATOR,
    "GET /webhooks": ADMIN,
    "POST /webhooks": ADMIN,
    "POST /webhooks/{endpoint_id}/{action}": ADMIN,
    "GET /tokens": ADMIN,
    "POST /tokens": ADMIN,
    "POST /tokens/revoke": ADMIN,
    "GET /sessions": ADMIN,
    "POST /sessions/end": ADMIN,
    "GET /audit": ADMIN,
}

NEEDS = {**REST, **CONSOLE}


class Forbidden(Exception):
    """The caller's role is below what the route needs."""

    def __init__(self, have: Role, need: Role) -> None:
        super().__init__(f"this needs the {need} role; yours is {have}")
        self.have = have
        self.need = need


def _key(method: str, path: str) -> str:
    return f"{'GET' if method == 'HEAD' else method} {path}"


def need(method: str, path: str) -> Role | None:
    """The role `method path` (a route's path template) needs; KeyError for no route."""
    return NEEDS[_key(method, path)]


def may(role: Role | None, method: str, path: str) -> bool:
    """Whether `role` may call `method path` (for the console, which shows only what the
    person may do)."""
    needed = NEEDS.get(_key(method, path))
    return needed is None or (role is not None and role.allows(needed))


def require(request: Request, have: Role) -> None:
    """Forbidden unless `have` reaches the need of the route `request` matched."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        raise Forbidden(have, ADMIN)  # not a declared route: nobody by default
    needed = NEEDS.get(_key(request.method, path), ADMIN)
    if needed is not None and not have.allows(needed):
        raise Forbidden(have, needed)


def routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """Every route of `app` that answers requests (`METHOD /path`, the route)."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            for method in sorted(route.methods or ()):
                yield _key(method, route.path), route


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


def verify(app: FastAPI, checks: tuple[Callable[..., Any], ...], *, console: bool) -> None:
    """RuntimeError unless every route of `app` is in the table, every entry has a route
    (the console's only when it is on), and every route that needs a role depends on one of
    `checks` (who is calling)."""
    table = {**REST, **CONSOLE} if console else REST
    seen: set[str] = set()
    problems = []
    for key, route in routes(app):
        seen.add(key)
        if key not in table:
            problems.append(f"{key}: no role declared in api/roles.py")
        elif (table[key] is None) == bool(set(_calls(route.dependant)) & set(checks)):
            problems.append(
                f"{key}: needs {table[key]} but never asks who is calling"
                if table[key] is not None
                else f"{key}: declared public but asks who is calling"
            )
    problems += [
        f"{key}: declared in api/roles.py but no such route" for key in table.keys() - seen
    ]
    if problems:
        raise RuntimeError("routes and roles disagree:\n" + "\n".join(sorted(problems)))
