"""Roles in the console, in Chromium: a viewer, an operator and an admin each signed in
through the OpenID provider. Every console route (api/roles.py's table) is asked for with
each one's session cookie and CSRF token, as a forged form post would: below the route's
role it is 403 and the database is as it was; the pages show only the actions the role may
take; a role changed in CONSOLE_ALLOWED applies at the next request."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, FilePayload, Page, expect

from api import roles
from core.roles import Role
from tests.browser.test_console import (
    ALLOWED,
    Console,
    _shot,
    _sign_in,
    _up,
    browser,
    console,
)
from tests.conftest import fingerprint, wait_for

__all__ = ["browser", "console"]
pytestmark = pytest.mark.e2e

VIEWER, OPERATOR = "vi@acme.test", "bo@ops.acme.test"
PEOPLE = {Role.VIEWER: VIEWER, Role.OPERATOR: OPERATOR, Role.ADMIN: ALLOWED}
SETTINGS = {"CONSOLE_ALLOWED": f"{ALLOWED}:admin {VIEWER}:viewer @ops.acme.test"}

# Each console route with what a person would send it; `None` for a GET.
PLAN: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET /", "/", None),
    ("GET /live/overview", "/live/overview", None),
    ("GET /sequences", "/sequences", None),
    ("POST /sequences", "/sequences", {"name": "Made", "timezone": "UTC"}),
    ("GET /sequences/{seq_id}", "/sequences/1", None),
    ("POST /sequences/{seq_id}", "/sequences/1",
     {"name": "Renamed", "timezone": "UTC", "senders": "sales@acme.test"}),
    ("POST /sequences/{seq_id}/status", "/sequences/1/status", {"to": "paused"}),
    ("POST /sequences/{seq_id}/preview", "/sequences/1/preview",
     {"position": "1", "wait_hours": "0", "body_text": "Hi"}),
    ("POST /sequences/{seq_id}/steps", "/sequences/1/steps",
     {"position": "2", "wait_hours": "1", "subject": "", "body_text": "Again"}),
    ("GET /leads", "/leads", None),
    ("GET /leads/{lead_id}", "/leads/1", None),
    ("POST /leads/{lead_id}/{action}", "/leads/1/pause", {}),
    ("GET /import", "/import", None),
    ("POST /import", "/import", {"sequence": "1", "dry_run": "on"}),
    ("GET /import/rejected/{token}.csv", "/import/rejected/none.csv", None),
    ("GET /emails/new", "/emails/new", None),
    ("POST /emails", "/emails",
     {"to": "bob@example.test", "subject": "Hi", "body_text": "Hello",
      "sender": "sales@acme.test"}),
    ("GET /dead-letters", "/dead-letters", None),
    ("POST /dead-letters/replay", "/dead-letters/replay", {}),
    ("POST /dead-letters/purge", "/dead-letters/purge", {"id": "1"}),
    ("GET /suppressions", "/suppressions", None),
    ("POST /suppressions", "/suppressions", {"entry": "gone@x.test"}),
    ("POST /suppressions/remove", "/suppressions/remove", {"entry": "gone@x.test"}),
    ("GET /senders", "/senders", None),
    ("POST /senders/{sender_id}", "/senders/1", {"hourly_limit": "7"}),
    ("POST /senders/{sender_id}/guard", "/senders/1/guard", {"hard_bounce_rate": "10"}),
    ("GET /senders/{sender_id}/check", "/senders/1/check", None),
    ("POST /senders/{sender_id}/resume", "/senders/1/resume", {}),
    ("GET /inbox", "/inbox", None),
    ("GET /inbox/{reply_id}", "/inbox/1", None),
    ("POST /inbox/{reply_id}/handled", "/inbox/1/handled", {}),
    ("POST /inbox/{reply_id}/answer", "/inbox/1/answer", {"body_text": "Thanks"}),
    ("GET /webhooks", "/webhooks", None),
    ("POST /webhooks", "/webhooks",
     {"url": "http://127.0.0.1:9/hook", "event_types": "lead.sent"}),
    ("POST /webhooks/{endpoint_id}/{action}", "/webhooks/1/test", {}),
    ("GET /tokens", "/tokens", None),
    ("POST /tokens", "/tokens", {"name": "made-here", "role": "viewer"}),
    ("POST /tokens/revoke", "/tokens/revoke", {"name": "made-here"}),
    ("GET /sessions", "/sessions", None),
    ("POST /sessions/end", "/sessions/end", {"key": "0000000000000000"}),
    ("GET /audit", "/audit", None),
    ("GET /signin", "/signin", None),
    ("GET /auth/login", "/auth/login", None),
    ("GET /auth/callback", "/auth/callback", None),
    ("POST /auth/logout", "/auth/logout", None),  # signs out: asked for last, by itself
]  # fmt: skip


def test_the_plan_covers_every_console_route() -> None:
    assert sorted(k for k, _, _ in PLAN) == sorted(roles.CONSOLE)


async def _signed_in(chromium: Browser, base: str, login: str) -> tuple[BrowserContext, Page, str]:
    context = await chromium.new_context()
    page = await context.new_page()
    await _sign_in(page, base, login)
    await expect(page).to_have_url(base + "/")
    csrf = await page.locator("form.signout input[name=csrf]").get_attribute("value")
    assert csrf
    return context, page, csrf


@pytest.mark.parametrize("console", [SETTINGS], indirect=True)
async def test_each_role_in_the_console(
    console: Console, browser: Browser, pool: asyncpg.Pool
) -> None:
    # Only the API: what the pipeline daemons write meanwhile would blur "nothing changed".
    for name, proc in console.daemons.procs:
        if name != "api":
            proc.terminate()
            assert proc.wait(30) == 0, name
    people = {role: await _signed_in(browser, console.base, who) for role, who in PEOPLE.items()}

    # What each one sees: the viewer no action at all, the operator no admin's.
    viewer = people[Role.VIEWER][1]
    await expect(viewer.locator("[data-role]")).to_have_text("viewer")
    nav = viewer.get_by_role("navigation", name="Console")
    for hidden in ("Import", "Schedule an email", "Webhooks", "Sessions", "Audit", "API tokens"):
        await expect(nav.get_by_role("link", name=hidden, exact=True)).to_have_count(0)
    await expect(nav.get_by_role("link", name="Senders", exact=True)).to_have_count(1)
    await viewer.goto(console.base + "/sequences")
    await expect(viewer.get_by_role("button", name=re.compile("^(Pause|Create)"))).to_have_count(0)
    await viewer.goto(console.base + "/sequences/1")
    await expect(viewer.get_by_role("button")).to_have_text(["Sign out"])
    await expect(viewer.get_by_role("textbox", name="Name", exact=True)).to_be_disabled()
    await expect(viewer.get_by_role("textbox", name="Text")).to_be_disabled()
    await viewer.goto(console.base + "/senders")
    await expect(viewer.get_by_role("button", name=re.compile("^Save"))).to_have_count(0)
    await expect(viewer.get_by_label("per hour")).to_be_disabled()
    await _shot(viewer, "roles-viewer-senders")
    refused = await viewer.goto(console.base + "/sessions")
    assert refused is not None
    assert refused.status == 403
    await expect(viewer.get_by_role("main")).to_contain_text(
        "Not allowed: this needs the admin role; yours is viewer."
    )
    await _shot(viewer, "roles-viewer-refused")

    operator = people[Role.OPERATOR][1]
    await operator.goto(console.base + "/sequences")
    await expect(operator.get_by_role("button", name=re.compile("^Pause"))).to_have_count(2)
    await operator.goto(console.base + "/senders")
    await expect(operator.get_by_role("button", name=re.compile("^Save"))).to_have_count(0)
    await operator.goto(console.base + "/suppressions")
    await expect(operator.get_by_role("button", name="Suppress")).to_have_count(1)

    admin = people[Role.ADMIN][1]
    await admin.goto(console.base + "/senders")
    await expect(admin.get_by_role("button", name=re.compile("^Save"))).to_have_count(2)
    await expect(
        admin.get_by_role("navigation", name="Console").get_by_role("link", name="Sessions")
    ).to_have_count(1)

    # Every route, as each role's own browser would post it (session cookie and CSRF token
    # included): refused below the route's role, with nothing changed.
    table = []
    anonymous = await browser.new_context()
    for key, path, form in PLAN:
        need = roles.CONSOLE[key]
        if need is None:  # signing in and out: anyone, and it would replace these sessions
            if key.startswith("GET"):  # signing out is test_console.py's
                answer = await anonymous.request.get(console.base + path, max_redirects=0)
                assert answer.status in {200, 302, 303}, (key, answer.status)
            table.append(f"| `{key}` | public |")
            continue
        for role in Role:
            context, _, csrf = people[role]
            allowed = need is None or role.allows(need)
            before = None if allowed else await fingerprint(pool)
            if form is None:
                answer = await context.request.get(console.base + path, max_redirects=0)
            elif key == "POST /import":
                upload = FilePayload(name="l.csv", mimeType="text/csv", buffer=b"email\na@x.test\n")
                answer = await context.request.post(
                    console.base + path, multipart={**form, "csrf": csrf, "file": upload},
                    max_redirects=0,
                )  # fmt: skip
            else:
                answer = await context.request.post(
                    console.base + path, form={**form, "csrf": csrf}, max_redirects=0
                )
            if allowed:
                assert answer.status != 403, (key, role, answer.status, await answer.text())
                assert "/signin" not in answer.headers.get("location", "") or need is None
            else:
                assert answer.status == 403, (key, role, answer.status)
                assert f"this needs the {need} role; yours is {role}" in await answer.text()
                assert await fingerprint(pool) == before, (key, role)
        table.append(f"| `{key}` | {need} |")
    await anonymous.close()
    print("\n| console route | role |\n|---|---|\n" + "\n".join(table))
    assert await pool.fetchval("SELECT hourly_limit FROM senders WHERE id = 1") == 7
    assert await pool.fetchval("SELECT count(*) FROM sequences WHERE name = 'Made'") == 1

    # The viewer becomes an admin in CONSOLE_ALLOWED: the same session, at its next request.
    api = next(p for n, p in console.daemons.procs if n == "api" and p.poll() is None)
    api.terminate()
    api.wait(30)
    console.daemons.start("api", 1, CONSOLE_ALLOWED=f"{VIEWER}:admin")
    await wait_for(lambda: _up(console.base), timeout=30, interval=0.2)
    now = await people[Role.VIEWER][0].request.get(console.base + "/sessions", max_redirects=0)
    assert now.status == 200
    gone = await people[Role.OPERATOR][0].request.get(console.base + "/", max_redirects=0)
    assert gone.status == 303  # no longer in CONSOLE_ALLOWED: signed out
    for context, _, _ in people.values():
        await context.close()
