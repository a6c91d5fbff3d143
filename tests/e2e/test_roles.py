"""Roles through the REST API as a process: every route of the OpenAPI document (and the
public ones outside it) called with a viewer's, an operator's and an admin's token. A role
below the route's need gets 403 problem+json and the database is as it was (every table's
rows compared); the lowest role allowed gets the route's own answer. The table printed is
the one README's roles section shows."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from api import roles
from core.roles import Role
from ops import tokens
from tests.conftest import fingerprint
from tests.e2e.test_api import SETUP, Client, api

__all__ = ["api"]
pytestmark = pytest.mark.e2e

# Each route with a request that does what the route is for (so a refusal that let it
# through would show in the database), in an order where what one creates the next uses.
PLAN: list[tuple[str, str, Any]] = [
    ("POST /api/v1/webhooks", "/api/v1/webhooks",
     {"url": "http://127.0.0.1:9/hook", "event_types": ["lead.sent"]}),
    ("GET /api/v1/webhooks", "/api/v1/webhooks", None),
    ("POST /api/v1/webhooks/{endpoint_id}/test", "/api/v1/webhooks/1/test", None),
    ("GET /api/v1/webhooks/{endpoint_id}/deliveries", "/api/v1/webhooks/1/deliveries", None),
    ("POST /api/v1/webhooks/{endpoint_id}/replay", "/api/v1/webhooks/1/replay", None),
    ("GET /api/v1/leads", "/api/v1/leads", None),
    ("GET /api/v1/leads/{lead_id}", "/api/v1/leads/1", None),
    ("POST /api/v1/leads/{lead_id}/{action}", "/api/v1/leads/1/pause", None),
    ("GET /api/v1/suppressions", "/api/v1/suppressions", None),
    ("POST /api/v1/suppressions", "/api/v1/suppressions", {"email": "l2@x.test"}),
    ("DELETE /api/v1/suppressions/{entry}", "/api/v1/suppressions/l2@x.test", None),
    ("POST /api/v1/replies", "/api/v1/replies", {"email": "l3@x.test"}),
    ("POST /api/v1/unsubscribes", "/api/v1/unsubscribes", {"email": "l4@x.test"}),
    ("GET /api/v1/sequences", "/api/v1/sequences", None),
    ("POST /api/v1/sequences", "/api/v1/sequences", {"name": "Second"}),
    ("GET /api/v1/sequences/{seq_id}", "/api/v1/sequences/1", None),
    ("PATCH /api/v1/sequences/{seq_id}", "/api/v1/sequences/1", {"name": "Renamed"}),
    ("POST /api/v1/sequences/{seq_id}/leads", "/api/v1/sequences/1/leads",
     [{"email": "new@x.test"}]),
    ("POST /api/v1/sequences/{seq_id}/{action}", "/api/v1/sequences/1/pause", None),
    ("GET /api/v1/sequences/{seq_id}/steps", "/api/v1/sequences/1/steps", None),
    ("PUT /api/v1/sequences/{seq_id}/steps/{position}", "/api/v1/sequences/1/steps/2",
     {"wait_seconds": 3600, "body_text": "Again"}),
    ("POST /api/v1/emails", "/api/v1/emails",
     {"to": "bob@example.test", "subject": "Hi", "body_text": "Hello", "sender": "s@acme.test"}),
    ("GET /api/v1/senders", "/api/v1/senders", None),
    ("POST /api/v1/senders", "/api/v1/senders", {"email": "t@acme.test"}),
    ("PATCH /api/v1/senders/{sender_id}", "/api/v1/senders/1", {"hourly_limit": 5}),
    ("POST /api/v1/senders/{sender_id}/resume", "/api/v1/senders/1/resume", None),
    ("GET /api/v1/status", "/api/v1/status", None),
    ("GET /api/v1/replies", "/api/v1/replies", None),
    ("GET /api/v1/replies/{reply_id}", "/api/v1/replies/1", None),
    ("POST /api/v1/replies/{reply_id}/handled", "/api/v1/replies/1/handled", None),
    ("POST /api/v1/replies/{reply_id}/answer", "/api/v1/replies/1/answer", {"body_text": "Hi"}),
    ("DELETE /api/v1/people/{email}", "/api/v1/people/l5@x.test", None),
    ("GET /api/v1/audit", "/api/v1/audit", None),
    ("GET /api/v1/tokens", "/api/v1/tokens", None),
    ("POST /api/v1/tokens", "/api/v1/tokens", {"name": "made", "role": "viewer"}),
    ("DELETE /api/v1/tokens/{name}", "/api/v1/tokens/made", None),
    ("DELETE /api/v1/webhooks/{endpoint_id}", "/api/v1/webhooks/1", None),
    ("GET /metrics", "/metrics", None),
    ("GET /healthz", "/healthz", None),
    ("GET /u/{token}", "/u/not-a-token", None),
    ("GET /u", "/u?token=not-a-token", None),
    ("POST /u/{token}", "/u/not-a-token", None),
    ("POST /u", "/u?token=not-a-token", None),
]  # fmt: skip
# No inbound reply 1 exists: those routes answer 404 to the roles allowed.
NOT_FOUND = {"/api/v1/replies/1", "/api/v1/replies/1/handled", "/api/v1/replies/1/answer"}


def test_the_plan_covers_every_route() -> None:
    assert [k for k, _, _ in PLAN if k not in roles.REST] == []
    assert sorted(roles.REST) == sorted(k for k, _, _ in PLAN)


@pytest.mark.parametrize("api", [{"WEBHOOK_ALLOW_PRIVATE": "true"}], indirect=True)
async def test_every_route_for_every_role(api: Client, pool: asyncpg.Pool) -> None:
    await pool.execute(SETUP)
    schema = api.call("GET", "/api/v1/openapi.json")[2]
    documented = {
        f"{method.upper()} {path}" for path, ops in schema["paths"].items() for method in ops
    }
    assert documented <= set(roles.REST), documented - set(roles.REST)
    assert {k for k, v in roles.REST.items() if v is not None} <= documented

    clients = {}
    async with pool.acquire() as conn:
        for role in Role:
            clients[role] = Client(api.base, await tokens.create(conn, f"as-{role}", role))
    anonymous = Client(api.base, None)

    table = []
    for key, path, body in PLAN:
        need = roles.REST[key]
        method = key.split()[0]
        if need is not None:
            status, headers, problem = anonymous.call(method, path, body)
            assert status == 401, (key, status, problem)
        for role in Role:
            if need is not None and not role.allows(need):
                before = await fingerprint(pool)
                status, headers, problem = clients[role].call(method, path, body)
                assert status == 403, (key, role, status, problem)
                assert headers["content-type"] == "application/problem+json"
                assert f"needs the {need} role; yours is {role}" in problem["detail"]
                assert await fingerprint(pool) == before, (key, role)
                continue
            status, _, answer = clients[role].call(method, path, body)
            if path in NOT_FOUND:
                assert status == 404, (key, status, answer)
            elif need is None:  # a bad unsubscribe token is its own answer
                assert status not in {401, 403}, (key, status, answer)
            elif key == "POST /api/v1/senders/{sender_id}/resume":
                assert status in {200, 409}, (key, status, answer)
            else:
                assert 200 <= status < 300, (key, role, status, answer)
            break
        table.append(f"| `{key}` | {need or 'public'} |")
    print("\n| route | role |\n|---|---|\n" + "\n".join(table))

    # What the allowed calls did is there: the admin's sender and token, the operator's
    # sequence; nothing a refused call asked for.
    assert await pool.fetchval("SELECT count(*) FROM senders WHERE email = 't@acme.test'") == 1
    assert await pool.fetchval("SELECT hourly_limit FROM senders WHERE id = 1") == 5
    assert await pool.fetchval("SELECT name FROM sequences WHERE id = 1") == "Renamed"
    assert await pool.fetchval("SELECT role FROM api_tokens WHERE name = 'made'") == "viewer"
