"""The web console in a real browser (Debian's Chromium, driven by Playwright), signed in
through a real OpenID provider (oidc-provider, started here), with the daemons sending to a
real SMTP server: import a CSV (dry run first), watch the counts move, pause a sequence,
retry a failed lead and read its timeline, sign out. Refused sign-ins (not allowed, a bad
state, a forged ID token) and a form without its CSRF token. axe-core on every page.
Screenshots of each page go to tests/browser/artifacts/ (or CONSOLE_ARTIFACTS)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from core.clock import utcnow
from core.dkim import load_keys
from core.guard import Kind, Policy
from db import guard as db_guard
from ops import dkim as ops_dkim
from tests.browser.oidc import Provider
from tests.conftest import wait_for
from tests.dns_server import DnsServer, Zone
from tests.e2e.daemons import Daemons, daemon_env
from tests.ports import free_port
from tests.smtp_server import SmtpServer
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.e2e
HERE = Path(__file__).parent
ARTIFACTS = Path(os.environ.get("CONSOLE_ARTIFACTS", HERE / "artifacts"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
AXE = HERE / "node_modules/axe-core/axe.min.js"
ALLOWED = "ana@acme.test"
HOSTILE = "<script>alert(1)</script>\u202e\"'"

SETUP = """
    INSERT INTO senders (email, name) VALUES ('sales@acme.test', 'Sales');
    INSERT INTO sequences (name) VALUES ('Welcome'), ('Later');
    INSERT INTO sequence_senders (sequence_id, sender_id) VALUES (1, 1), (2, 1);
    INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
    VALUES (1, 1, 0, 'Hello {{ first_name }}', 'Hi {{ first_name }}, one step only.'),
           (2, 1, 0, 'Hi', 'Hello');
"""


def sign_in_env(provider: Provider, allowed: str) -> dict[str, str]:
    """The API's settings for a console its tests sign in to through `provider`."""
    return {
        "OIDC_ISSUER": provider.issuer, "OIDC_CLIENT_ID": provider.client_id,
        "OIDC_CLIENT_SECRET": provider.client_secret, "CONSOLE_ALLOWED": allowed,
        "SESSION_SECRET": "console-session-secret-for-the-tests-0123456789",
        "SESSION_COOKIE_SECURE": "false",
    }  # fmt: skip


@dataclass
class Console:
    base: str
    provider: Provider
    daemons: Daemons


@pytest.fixture
async def console(  # noqa: PLR0917 - fixtures
    pool: asyncpg.Pool,
    database: str,
    amqp_prefix: str,
    smtp: SmtpServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Console]:
    """The console and the daemons (more settings from an indirect parameter)."""
    await pool.execute(SETUP)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    provider = Provider(free_port(), f"{base}/auth/callback", ALLOWED, tmp_path / "oidc.log")
    ops_dkim.create(tmp_path / "dkim", "acme.test", "s1", algorithm="ed25519")
    # The pre-flight's DNS: the DKIM record published, nothing else (an SPF, a DMARC, an MX
    # to fix).
    key = load_keys(tmp_path / "dkim")["acme.test"]
    dns_server = DnsServer(Zone(txt={"s1._domainkey.acme.test": [key.dns_record()]}), tmp_path)
    env = daemon_env(
        database, amqp_prefix, smtp.port,
        API_HOST="127.0.0.1", API_PORT=str(port), HEALTH_DIR=str(tmp_path / "health"),
        **{**sign_in_env(provider, f"{ALLOWED}:admin @ops.acme.test"),
           **getattr(request, "param", {})},
        RETRY_BASE_SECONDS="1", SEND_MAX_ATTEMPTS="2",
        DKIM_KEYS_DIR=str(tmp_path / "dkim"), DNS_NAMESERVERS=dns_server.nameservers,
        WEBHOOK_ALLOW_PRIVATE="true", WEBHOOK_POLL_SECONDS="0.2",
    )  # fmt: skip
    daemons = Daemons(env, tmp_path)
    for module in ("api", "scheduler", "pump", "worker", "webhooks"):
        daemons.start(module)

    try:
        await wait_for(lambda: _up(base), timeout=30, interval=0.2)
        yield Console(base, provider, daemons)
    finally:
        codes = daemons.stop_all()
        provider.stop()
        dns_server.stop()
    assert all(c == 0 for c in codes.values()), daemons.logs()[-3000:]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (make test does)")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


async def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


async def _axe(page: Page, name: str) -> None:
    """axe-core's serious and critical violations on the page: none."""
    await page.add_script_tag(path=AXE)
    result = await page.evaluate("async () => await axe.run(document)")
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert bad == [], (name, bad)


async def _sign_in(page: Page, base: str, login: str) -> None:
    await page.goto(base + "/")
    await expect(page).to_have_url(re.compile(r"/signin$"))
    await page.get_by_role("link", name="Sign in").click()
    await page.locator("input[name=login]").fill(login)
    await page.locator("input[name=password]").fill("any")
    await page.locator("button[type=submit]").click()
    consent = page.locator("button[type=submit]", has_text=re.compile("Continue", re.I))
    await consent.click()


async def test_the_console_flow_in_a_browser(
    console: Console, browser: Browser, pool: asyncpg.Pool, smtp: SmtpServer, tmp_path: Path
) -> None:
    # Busy twice: with two attempts allowed, the lead fails (and is not suppressed).
    smtp.handler.rules.data_failures["busy@example.test"] = ["451 4.2.1 mailbox busy"] * 2
    context = await browser.new_context(bypass_csp=False)
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    await _sign_in(page, console.base, ALLOWED)
    await expect(page).to_have_url(console.base + "/")
    await expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    await _shot(page, "01-overview-empty")

    # Import: a dry run first stores nothing and reports the bad rows.
    rows = ["email,first_name"] + [f"lead{i}@example.test,Lead{i}" for i in range(20)]
    rows += ["not-an-address,Bad", f"busy@example.test,{HOSTILE}", "x@@example.test,Worse"]
    csv_path = tmp_path / "leads.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    await page.get_by_role("link", name="Import").click()
    await page.locator("select[name=sequence]").select_option(label="Welcome")
    await page.get_by_label(re.compile("^CSV file")).set_input_files(csv_path)
    await page.get_by_role("button", name="Upload").click()
    await expect(page.locator("[data-report=rejected]")).to_have_text("2")
    await expect(page.locator("[data-report=imported]")).to_have_text("21")
    assert await pool.fetchval("SELECT count(*) FROM leads") == 0
    await _shot(page, "02-import-dry-run")
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name=re.compile("Download all 2 rejected rows")).click()
    rejected = (await (await download_info.value).path()).read_text()
    assert "not-an-address" in rejected
    assert "x@@example.test" in rejected

    # A file of 30,000 bad rows (3 MB of rejections, past any form field's limit): the page
    # lists the first 200, the download holds every one as it was read.
    big = tmp_path / "bad.csv"
    big.write_text("email,first_name\n" + "".join(f"bad{i}-{'x' * 60},B\n" for i in range(30_000)))
    await page.get_by_label(re.compile("^CSV file")).set_input_files(big)
    await page.get_by_role("button", name="Upload").click()
    await expect(page.locator("[data-report=rejected]")).to_have_text("30,000")
    await expect(page.locator("#report tbody tr")).to_have_count(200)
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name=re.compile("Download all 30,000 rejected")).click()
    with (await (await download_info.value).path()).open(newline="") as f:
        kept = list(csv.reader(f))
    assert len(kept) == 30_001
    assert kept[0] == ["line", "reason", "record"]
    assert kept[-1][0] == "30001"
    assert kept[-1][2] == f"bad29999-{'x' * 60},B"
    # The link is this person's: in another browser (no session) it leads to sign-in.
    link = await page.get_by_role("link", name=re.compile("Download all")).get_attribute("href")
    stranger = await browser.new_context()
    unsigned = await stranger.request.get(console.base + str(link), max_redirects=0)
    assert unsigned.status in {302, 303, 307, 401}
    await stranger.close()

    await page.get_by_role("checkbox", name=re.compile("^Dry run")).uncheck()
    await page.get_by_label(re.compile("^CSV file")).set_input_files(csv_path)
    await page.get_by_role("button", name="Upload").click()
    await expect(page.get_by_role("heading", name="Imported")).to_be_visible()
    await expect(page.locator("[data-report=imported]")).to_have_text("21")
    assert await pool.fetchval("SELECT count(*) FROM leads") == 21

    # The overview's counts move as the daemons send (it polls every 2 s).
    await page.get_by_role("link", name="Overview").click()
    await expect(page.locator("[data-count=completed]")).to_have_text("20", timeout=30_000)
    await expect(page.locator("[data-count=failed]")).to_have_text("1", timeout=30_000)
    await expect(page.locator("[data-count=replicas]")).to_have_text(re.compile("[45]"))
    assert len(smtp.received) == 20
    await _shot(page, "03-overview-sent")

    # Pause a sequence; a page opened before (a colleague's) asks for it again: a note.
    stale = await context.new_page()
    await stale.goto(console.base + "/sequences")
    await page.get_by_role("link", name="Sequences").click()
    await page.get_by_role("button", name="Pause Later").click()
    await expect(page.get_by_role("status")).to_have_text("paused")
    assert await pool.fetchval("SELECT status FROM sequences WHERE name = 'Later'") == "paused"
    await stale.get_by_role("button", name="Pause Later").click()
    await expect(stale.get_by_role("status")).to_have_text("already paused")
    # Digits that are not ASCII in a search are a search, not an error.
    answer = await stale.goto(console.base + "/leads?q=%C2%B2")
    assert answer is not None
    assert answer.status == 200
    await stale.close()
    await expect(page.locator("tr", has_text="Welcome")).to_contain_text("20 sent")
    await _shot(page, "04-sequences")

    # Find the failed lead, read its timeline (the hostile name is shown as text), retry it.
    await page.get_by_role("link", name="Leads").click()
    await page.get_by_label("Address or id").fill("busy@example.test")
    await page.get_by_role("button", name="Search").click()
    await page.locator("table a").first.click()
    await expect(page.locator("[data-lead-status]")).to_have_text("failed")
    await expect(page.locator("main")).to_contain_text(HOSTILE)
    await expect(page.locator(".timeline")).to_contain_text("failed")
    await _shot(page, "05-lead-failed")
    await page.get_by_role("button", name="Retry").click()
    await expect(page.get_by_role("status")).to_have_text("retry done")
    await wait_for(lambda: len(smtp.received) == 21, timeout=30)

    async def shown_completed() -> bool:  # the send is recorded just after the server has it
        await page.reload()
        return await page.locator("[data-lead-status]").inner_text() == "completed"

    await wait_for(shown_completed, timeout=15, interval=0.5)
    await expect(page.locator(".timeline")).to_contain_text("retried")
    await _shot(page, "06-lead-retried")

    # A step's live preview, with a template error shown before saving.
    await page.goto(console.base + "/sequences/1")
    form = page.locator("form.step").first
    await form.get_by_label(re.compile("^Text")).fill("Hi {{ first_name | nosuchfilter }}")
    await expect(form.locator(".preview")).to_contain_text("Template error", timeout=10_000)
    await form.get_by_label(re.compile("^Text")).fill("Hi {{ first_name }}, again")
    await expect(form.locator(".preview")).to_contain_text("Hi Ana, again", timeout=10_000)
    await _shot(page, "07-sequence-preview")
    await form.get_by_role("button", name="Save step").click()
    await expect(page.get_by_role("status")).to_have_text("step saved")
    body = await pool.fetchval("SELECT body_text FROM sequence_steps WHERE sequence_id = 1")
    assert body == "Hi {{ first_name }}, again"
    # A step that does not render is not saved.
    form = page.locator("form.step").first
    await form.get_by_label(re.compile("^Text")).fill("{% for %}")
    await form.get_by_role("button", name="Save step").click()
    await expect(page.get_by_role("alert")).to_contain_text("not saved")
    assert await pool.fetchval("SELECT body_text FROM sequence_steps WHERE sequence_id = 1") == body

    # Every page: a screenshot and axe-core (in a context that lets its script in; the
    # console's own pages run under the CSP everywhere else).
    audit = await browser.new_context(bypass_csp=True, storage_state=await context.storage_state())
    audit_page = await audit.new_page()
    first_lead = await pool.fetchval("SELECT min(id) FROM leads")
    for path, name in [
        ("/", "overview"), ("/sequences", "sequences"), ("/sequences/1", "sequence"),
        ("/leads", "leads"), (f"/leads/{first_lead}", "lead"), ("/import", "import"),
        ("/emails/new", "email"), ("/dead-letters", "dead-letters"),
        ("/suppressions", "suppressions"), ("/senders", "senders"), ("/tokens", "tokens"), ("/webhooks", "webhooks"),
        ("/senders/1/check", "sender-check"),
    ]:  # fmt: skip
        await page.goto(console.base + path)
        await expect(page.locator("h1")).not_to_have_text("Not done")
        await _shot(page, f"page-{name}")
        await audit_page.goto(console.base + path)
        await _axe(audit_page, name)
    await audit.close()

    # The senders page shows the sender's DKIM key (the worker signed with it).
    await page.goto(console.base + "/senders")
    await expect(page.locator("tr", has_text="sales@acme.test")).to_contain_text("selector s1")
    assert all(r.message["DKIM-Signature"] for r in smtp.received)

    # The guard pauses the sender (its window says 20 % hard bounces): the page says why
    # and resumes it; the pre-flight lists each DNS check with what to fix.
    async with pool.acquire() as conn:
        outcomes = [
            db_guard.Outcome(1, 10_000 + i, 1, Kind.HARD_BOUNCE if i % 5 == 0 else Kind.DELIVERED)
            for i in range(25)
        ]
        assert await db_guard.observe(conn, outcomes, Policy(), utcnow())
    row = page.locator("tr", has_text="sales@acme.test")

    async def shown_paused() -> bool:  # the page reads the shared status of the last 2 s
        await page.goto(console.base + "/senders")
        return "paused: hard_bounce_rate" in await row.locator("[data-guard]").inner_text()

    await wait_for(shown_paused, timeout=15, interval=0.5)
    await row.get_by_role("button", name=re.compile("^Resume")).click()
    await expect(page.get_by_role("status")).to_have_text("resumed")
    assert await pool.fetchval("SELECT status FROM senders WHERE id = 1") == "active"
    # Its own threshold and a warm-up, set here.
    row = page.locator("tr", has_text="sales@acme.test")
    await row.get_by_label("pause over % bounces").fill("3")
    await row.get_by_label("warm-up from").fill("20")
    await row.get_by_label("+ a day").fill("10")
    await row.get_by_label("yahoo").fill("40")
    await row.get_by_role("button", name=re.compile("^Save guard")).click()
    await expect(page.get_by_role("status")).to_have_text("guard saved")
    saved = await pool.fetchrow(
        "SELECT guard_hard_bounce_rate, warmup_start, warmup_increment, warmup_started_at,"
        " provider_caps FROM senders WHERE id = 1"
    )
    assert saved is not None
    assert (round(saved[0], 4), saved[1], saved[2], saved[4]) == (0.03, 20, 10, {"yahoo": 40})
    assert saved[3] is not None

    async def shown_cap() -> bool:  # the shared status of the last 2 s, again
        await page.goto(console.base + "/senders")
        cap = page.locator("tr", has_text="sales@acme.test").locator("[data-provider-cap=yahoo]")
        return await cap.count() == 1 and await cap.inner_text() == "yahoo 0 / 40"

    await wait_for(shown_cap, timeout=15, interval=0.5)
    # The audit trail has it: this person, the console, the fields before and after.
    await page.get_by_role("link", name="Audit").click()
    change = page.locator('[data-audit="senders:1"]').first
    await expect(change).to_contain_text(ALLOWED)
    await expect(change).to_contain_text("console")
    await expect(change.locator("[data-field=warmup_start]")).to_contain_text("None → 20")
    await page.goto(console.base + "/senders")
    await (
        page.locator("tr", has_text="sales@acme.test")
        .get_by_role("link", name=re.compile("^Pre-flight"))
        .click()
    )
    await expect(page.locator("[data-check]")).to_have_count(5)
    await expect(page.locator("[data-check=dkim]")).to_contain_text("s1._domainkey.acme.test")

    # One email, scheduled from the composer, arrives.
    await page.get_by_role("link", name="Schedule an email").click()
    await page.get_by_label("To", exact=True).fill("once@example.test")
    await page.get_by_label("Subject", exact=True).fill("Just once")
    await page.get_by_label("Text", exact=True).fill("One email, from the console.")
    await page.get_by_role("button", name="Schedule").click()
    await expect(page.get_by_role("status")).to_contain_text("Scheduled")
    await wait_for(lambda: any(r.rcpt_to == ["once@example.test"] for r in smtp.received), 30)

    # Yahoo answers "try later" to this sender: the overview says its mail there is held
    # back from the forecast, and until when.
    smtp.handler.rules.rcpt["later@yahoo.com"] = (
        "421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to user complaints"
    )
    await page.get_by_role("link", name="Schedule an email").click()
    await page.get_by_label("To", exact=True).fill("later@yahoo.com")
    await page.get_by_label("Subject", exact=True).fill("Later")
    await page.get_by_label("Text", exact=True).fill("When Yahoo takes it.")
    await page.get_by_role("button", name="Schedule").click()
    await expect(page.get_by_role("status")).to_contain_text("Scheduled")
    await wait_for(lambda: any(r == "later@yahoo.com" for _, r, _ in smtp.handler.rules.tried), 30)

    async def shown_held() -> bool:
        await page.goto(console.base + "/")
        held = page.locator('[data-held="sales@acme.test yahoo"]')
        return await held.count() == 1 and "waits until" in await held.inner_text()

    await wait_for(shown_held, timeout=15, interval=0.5)

    # An API token is shown once.
    await page.goto(console.base + "/tokens")
    await page.get_by_label("Name").fill("crm")
    await page.get_by_role("button", name="Create a token").click()
    token = await page.locator("[data-token]").inner_text()
    assert token.startswith("es_")
    await page.reload()
    assert token not in await page.content()

    # A webhook endpoint: its secret is shown once; the test message it sends verifies with
    # the Standard Webhooks library against that secret.
    receiver = Receiver(free_port())
    receiver.start()
    try:
        await page.get_by_role("link", name="Webhooks").click()
        await page.get_by_label("URL").fill(f"http://127.0.0.1:{receiver.port}/in")
        await page.get_by_label("lead.replied").check()
        await page.get_by_role("button", name="Add the endpoint").click()
        receiver.secret = await page.locator("[data-secret]").inner_text()
        assert receiver.secret.startswith("whsec_")
        await _shot(page, "10-webhook-added")
        await page.goto(console.base + "/webhooks")
        assert receiver.secret not in await page.content()
        await page.get_by_role("button", name=re.compile("^Send a test")).click()
        await expect(page.get_by_role("status")).to_have_text("test message queued")
        await wait_for(lambda: len(receiver.verified) == 1, timeout=20)
        assert receiver.verified[0].payload["type"] == "webhook.test"
    finally:
        receiver.stop()

    # Sign out: the console asks to sign in again.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/signin$"))
    await page.goto(console.base + "/leads")
    await expect(page).to_have_url(re.compile(r"/signin$"))
    await context.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors


async def _refused(browser: Browser, console: Console, login: str) -> str:
    context = await browser.new_context()
    page = await context.new_page()
    await _sign_in(page, console.base, login)
    await expect(page).to_have_url(re.compile(r"/signin$"))
    text = await page.locator("[role=alert]").inner_text()
    await page.goto(console.base + "/")
    await expect(page).to_have_url(re.compile(r"/signin$"))  # no session came of it
    await context.close()
    return text


async def test_refused_sign_ins_and_a_form_without_its_csrf_token(
    console: Console, browser: Browser, pool: asyncpg.Pool
) -> None:
    assert "may not use this console" in await _refused(browser, console, "eve@evil.test")
    # The provider returns a token whose claims were changed after signing.
    assert "could not be verified" in await _refused(browser, console, "forger@acme.test")
    # A callback with a state this browser never started.
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(console.base + "/auth/callback?code=forged&state=forged")
    await expect(page).to_have_url(re.compile(r"/signin$"))
    await expect(page.locator("[role=alert]")).to_contain_text("could not be verified")
    await context.close()
    # A domain in CONSOLE_ALLOWED lets its people in.
    context = await browser.new_context()
    page = await context.new_page()
    await _sign_in(page, console.base, "bo@ops.acme.test")
    await expect(page).to_have_url(console.base + "/")
    # A form posted without the CSRF token (or with another) changes nothing.
    cookies = {c["name"]: c["value"] for c in await context.cookies()}
    for token in (None, "not-the-token"):
        data = {"to": "paused"} | ({"csrf": token} if token else {})
        req = urllib.request.Request(  # noqa: S310
            f"{console.base}/sequences/1/status",
            data="&".join(f"{k}={v}" for k, v in data.items()).encode(),
            headers={"Cookie": f"console_session={cookies['console_session']}",
                     "Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)  # noqa: S310
        assert err.value.code == 403
    assert await pool.fetchval("SELECT status FROM sequences WHERE id = 1") == "active"
    headers = (await page.goto(console.base + "/")).headers  # type: ignore[union-attr]
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    cookie = next(c for c in await context.cookies() if c["name"] == "console_session")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"
    await context.close()


def test_the_provider_script_and_chromium_are_installed_by_the_project() -> None:
    makefile = (HERE.parents[1] / "Makefile").read_text()
    assert "chromium" in makefile
    assert "npm ci" in makefile
    lock = json.loads((HERE / "package-lock.json").read_text())
    assert "node_modules/oidc-provider" in lock["packages"]
    assert shutil.which("node")


async def test_a_copied_session_cookie_stops_working_when_the_session_ends(
    console: Console, browser: Browser, pool: asyncpg.Pool
) -> None:
    """Sessions live in PostgreSQL: a cookie copied from a signed-in browser is refused
    once that browser signs out, once the session is ended from the Sessions page, and
    once the address leaves CONSOLE_ALLOWED (the API restarted without it)."""

    async def signed_in() -> BrowserContext:
        context = await browser.new_context()
        page = await context.new_page()
        await _sign_in(page, console.base, ALLOWED)
        await expect(page).to_have_url(console.base + "/")
        return context

    async def refused(state: Any) -> bool:
        thief = await browser.new_context(storage_state=state)
        page = await thief.new_page()
        await page.goto(console.base + "/leads")
        gone = page.url.endswith("/signin")
        await thief.close()
        return gone

    # Signed out: the copy is refused too.
    first = await signed_in()
    copied = await first.storage_state()
    assert not await refused(copied)  # a copy works while the session lives
    page = first.pages[0]
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/signin$"))
    assert await refused(copied)
    await first.close()

    # Ended by someone else on the Sessions page.
    admin, other = await signed_in(), await signed_in()
    copied = await other.storage_state()
    page = admin.pages[0]
    await page.get_by_role("link", name="Sessions").click()
    await expect(page.locator("[data-session]")).to_have_count(2)
    await expect(page.locator("[data-session=mine]")).to_have_count(1)
    await page.locator("[data-session=other]").get_by_role("button").click()
    await expect(page.get_by_role("status")).to_contain_text("session")
    assert await refused(copied)
    await page.reload()
    await expect(page).to_have_url(console.base + "/sessions")  # this browser is still in
    await other.close()

    # The address leaves CONSOLE_ALLOWED: the API restarted without it ends the session
    # at its next request.
    copied = await admin.storage_state()
    await admin.close()
    api = next(p for n, p in console.daemons.procs if n == "api" and p.poll() is None)
    api.terminate()
    api.wait(30)
    console.daemons.start("api", 1, CONSOLE_ALLOWED="@ops.acme.test:admin")
    await wait_for(lambda: _up(console.base), timeout=30, interval=0.2)
    if not await refused(copied):
        raise AssertionError("a session of an address no longer allowed still works")
    why = await pool.fetch("SELECT ended_why FROM console_sessions WHERE ended_at IS NOT NULL")
    assert "no longer in CONSOLE_ALLOWED" in {r["ended_why"] for r in why}


def _up(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:  # noqa: S310
            return bool(r.status == 200)
    except OSError:
        return False
