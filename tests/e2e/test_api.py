"""The REST API through a real HTTP server (`python -m api` on a free port): bearer tokens,
problem details, lead actions with the token's name as actor, suppressions, replies,
one-click unsubscribe (RFC 8058) for good, forged and repeated tokens."""

from __future__ import annotations

import asyncio
import http.client
import importlib
import json
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from core.roles import Role
from core.unsubscribe import make_token
from ops import tokens
from tests import promlint
from tests.conftest import AMQP_URL, wait_for
from tests.e2e.daemons import Daemons, daemon_env
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.e2e
SECRET = "api-test-secret-of-at-least-32-bytes"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client:
    def __init__(self, base: str, token: str | None) -> None:
        self.base = base
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        if content_type is not None:
            req.add_header("Content-Type", content_type)
        elif data is not None and raw is None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - our own server
                text = resp.read().decode()
                status, headers = resp.status, dict(resp.headers)
        except urllib.error.HTTPError as err:
            text = err.read().decode()
            status, headers = err.code, dict(err.headers)
        ctype = headers.get("content-type", "")
        return status, headers, json.loads(text) if "json" in ctype and text else text


@pytest.fixture
async def api(
    pool: asyncpg.Pool,
    database: str,
    amqp_prefix: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Client]:
    """The API as a process (settings beyond the usual from an indirect parameter)."""
    port = free_port()
    daemons = Daemons(
        {
            "DATABASE_URL": database,
            "AMQP_URL": AMQP_URL,
            "AMQP_PREFIX": amqp_prefix,
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
            "UNSUBSCRIBE_SECRET": SECRET,
            "HEALTH_DIR": str(tmp_path / "health"),
            **getattr(request, "param", {}),
        },
        tmp_path,
    )
    daemons.start("api")
    async with pool.acquire() as conn:
        token = await tokens.create(conn, "crm", Role.ADMIN)
    client = Client(f"http://127.0.0.1:{port}", token)

    def up() -> bool:
        try:
            return client.call("GET", "/healthz")[0] == 200
        except OSError:
            return False

    try:
        await wait_for(lambda: asyncio.to_thread(up), timeout=30, interval=0.2)
        yield client
    finally:
        codes = daemons.stop_all()
    assert codes == {"api#0": 0}, daemons.logs()[-2000:]


SETUP = """
    INSERT INTO senders (email) VALUES ('s@acme.test');
    INSERT INTO sequences (name) VALUES ('Welcome');
    INSERT INTO sequence_steps (sequence_id, position, subject, body_text) VALUES (1, 1, 's', 'b');
    INSERT INTO leads (sequence_id, sender_id, email)
    SELECT 1, 1, 'l' || i || '@x.test' FROM generate_series(1, 5) i;
"""


async def test_tokens_problems_and_lead_actions(api: Client, pool: asyncpg.Pool) -> None:
    await pool.execute(SETUP)
    anonymous = Client(api.base, None)
    status, headers, body = anonymous.call("GET", "/api/v1/leads")
    assert status == 401
    assert headers["content-type"] == "application/problem+json"
    assert body["status"] == 401
    assert Client(api.base, "es_forged").call("GET", "/api/v1/leads")[0] == 401

    status, _, page = api.call("GET", "/api/v1/leads?limit=2")
    assert status == 200
    assert [x["id"] for x in page["items"]] == [1, 2]
    _, _, page2 = api.call("GET", f"/api/v1/leads?limit=2&cursor={page['next_cursor']}")
    assert [x["id"] for x in page2["items"]] == [3, 4]
    status, _, bad = api.call("GET", "/api/v1/leads?status=sideways")
    assert (status, bad["detail"].split(":")[0]) == (422, "status")

    assert api.call("POST", "/api/v1/leads/2/pause")[0] == 200
    status, _, conflict = api.call("POST", "/api/v1/leads/2/pause")
    assert (status, conflict["title"]) == (409, "Conflict")
    assert api.call("POST", "/api/v1/leads/999/stop")[0] == 404
    assert api.call("POST", "/api/v1/leads/2/dance")[0] == 422
    actor = await pool.fetchval("SELECT data->>'actor' FROM events WHERE type = 'paused'")
    assert actor == "crm"
    status, _, detail = api.call("GET", "/api/v1/leads/2")
    assert (status, detail["lead"]["status"]) == (200, "paused")
    assert [e["type"] for e in detail["events"]] == ["paused"]

    status, _, added = api.call("POST", "/api/v1/suppressions", {"email": "L3@x.test"})
    assert (status, added) == (200, {"email": "l3@x.test", "added": True, "stopped": 1})
    status, _, problem = api.call("POST", "/api/v1/suppressions", {"email": "no way"})
    assert (status, problem["detail"].startswith("email:")) == (422, True)
    assert api.call("POST", "/api/v1/replies", {"email": "l4@x.test"})[2]["stopped"] == 1
    assert api.call("POST", "/api/v1/replies", {"email": "*@x.test"})[0] == 422
    assert api.call("POST", "/api/v1/replies", raw=b"{not json")[0] == 422
    assert api.call("DELETE", "/api/v1/suppressions/l3@x.test")[0] == 204
    assert api.call("DELETE", "/api/v1/suppressions/l3@x.test")[0] == 404

    await pool.execute("UPDATE api_tokens SET revoked_at = now()")
    await asyncio.sleep(11)  # the API trusts a checked token for 10 s
    assert api.call("GET", "/api/v1/leads")[0] == 401


async def test_one_click_unsubscribe(api: Client, pool: asyncpg.Pool) -> None:
    await pool.execute(SETUP)
    token = make_token(SECRET, 1)
    status, _, page = api.call("GET", f"/u/{token}")
    assert status == 200
    assert 'method="post"' in page
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 0  # a GET changes nothing
    one_click = b"List-Unsubscribe=One-Click"
    assert api.call("POST", f"/u/{token}", raw=one_click)[0] == 200
    assert api.call("POST", f"/u/{token}", raw=one_click)[0] == 200  # again: harmless
    assert await pool.fetchval("SELECT email FROM suppressions") == "l1@x.test"
    assert await pool.fetchval("SELECT status FROM leads WHERE id = 1") == "stopped"
    for bad in (make_token("x" * 32, 2), "2.AAAAAAAAAAAAAAAAAAAAAA", "garbage", "%3Cscript%3E"):
        status, _, text = api.call("POST", f"/u/{bad}", raw=one_click)
        assert status == 400, bad
        assert "<script>" not in text
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 1


async def test_one_click_from_the_header_of_a_sent_message(  # noqa: PLR0917
    api: Client, pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    """What a mailbox provider does with RFC 8058: POST exactly the List-Unsubscribe URL of
    the message it received, with body List-Unsubscribe=One-Click."""
    await pool.execute(SETUP.replace("generate_series(1, 5)", "generate_series(1, 1)"))
    await pool.execute(
        "INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)"
        " VALUES (1, 2, 86400, 'again', 'b')"
    )
    env = daemon_env(database, amqp_prefix, smtp.port, UNSUBSCRIBE_URL=f"{api.base}/u",
                     UNSUBSCRIBE_SECRET=SECRET)  # fmt: skip
    (tmp_path / "daemons").mkdir()
    daemons = Daemons(env, tmp_path / "daemons")
    for module in ("scheduler", "pump", "worker"):
        daemons.start(module)
    try:
        await wait_for(lambda: len(smtp.received) == 1, timeout=30)
    finally:
        codes = daemons.stop_all()
    assert all(c == 0 for c in codes.values()), daemons.logs()[-2000:]
    message = smtp.received[0].message
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    (url,) = [u for u in re.findall(r"<([^>]+)>", message["List-Unsubscribe"]) if "://" in u]
    assert url.startswith(api.base + "/u/")
    assert await pool.fetchval("SELECT status FROM leads WHERE id = 1") == "active"

    req = urllib.request.Request(  # noqa: S310 - the URL of our own server, from the header
        url, data=b"List-Unsubscribe=One-Click", method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
        assert resp.status == 200
        assert "You are unsubscribed" in resp.read().decode()
    assert await pool.fetchval("SELECT email FROM suppressions") == "l1@x.test"
    assert await pool.fetchval("SELECT status FROM leads WHERE id = 1") == "stopped"
    view = api.call("GET", "/api/v1/status")[2]
    assert view["sequences"][0]["last_24h"]["unsubscribed"] == 1

    # The form of links in mail sent before (UNSUBSCRIBE_URL?token=…) still works.
    await pool.execute(
        "INSERT INTO leads (sequence_id, sender_id, email) VALUES (1, 1, 'old@x.test')"
    )
    old = await pool.fetchval("SELECT id FROM leads WHERE email = 'old@x.test'")
    legacy = f"/u?token={make_token(SECRET, old)}"
    assert 'method="post"' in api.call("GET", legacy)[2]
    assert api.call("POST", legacy, raw=b"List-Unsubscribe=One-Click")[0] == 200
    assert await pool.fetchval("SELECT status FROM leads WHERE id = $1", old) == "stopped"


async def test_a_bounced_lead_is_not_retried_while_suppressed_and_says_why(  # noqa: PLR0917
    api: Client, pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A retry of a lead whose address bounced would only be stopped again: the answer says
    why, the lead shows the suppression, and lifting it is its own act, logged."""
    await pool.execute(SETUP.replace("generate_series(1, 5)", "generate_series(1, 1)"))
    await pool.execute(
        "INSERT INTO leads (sequence_id, sender_id, email) VALUES (1, 1, 'gone@x.test')"
    )
    smtp.handler.rules.rcpt["gone@x.test"] = "550 5.1.1 <gone@x.test>: User unknown"
    (tmp_path / "daemons").mkdir()
    daemons = Daemons(daemon_env(database, amqp_prefix, smtp.port), tmp_path / "daemons")
    for module in ("scheduler", "pump", "worker"):
        daemons.start(module)
    try:
        await wait_for(
            lambda: pool.fetchval(
                "SELECT status = 'failed' FROM leads WHERE email = 'gone@x.test'"
            ),
            timeout=30,
        )
        gone = await pool.fetchval("SELECT id FROM leads WHERE email = 'gone@x.test'")
        status, _, problem = api.call("POST", f"/api/v1/leads/{gone}/retry")
        assert status == 409
        assert problem["detail"].startswith("its address is suppressed (gone@x.test, reason bounce")
        assert await pool.fetchval("SELECT status FROM leads WHERE id = $1", gone) == "failed"
        held = api.call("GET", f"/api/v1/leads/{gone}")[2]["suppression"]
        assert (held["suppression"], held["reason"]) == ("gone@x.test", "bounce")
        assert api.call("DELETE", "/api/v1/suppressions/gone@x.test")[0] == 204
        lifted = await pool.fetchrow("SELECT data FROM events WHERE type = 'suppression_lifted'")
        assert lifted is not None
        assert lifted["data"] == {"entry": "gone@x.test", "reason": "bounce", "actor": "crm"}
        assert api.call("GET", f"/api/v1/leads/{gone}")[2]["suppression"] is None
        assert api.call("POST", f"/api/v1/leads/{gone}/retry")[0] == 200
        assert await pool.fetchval("SELECT status FROM leads WHERE id = $1", gone) == "active"
    finally:
        codes = daemons.stop_all()
    assert all(c == 0 for c in codes.values()), daemons.logs()[-2000:]


async def test_a_client_generated_from_the_openapi_document_schedules_an_email(
    api: Client, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """What an integrator does: generate a client with openapi-python-client from
    /api/v1/openapi.json, authenticate with a bearer token (the document's security
    scheme) and schedule an email; a refusal comes back as a typed problem."""
    await pool.execute("INSERT INTO senders (email, name) VALUES ('ana@acme.test', 'Ana')")
    status, _, document = api.call("GET", "/api/v1/openapi.json")
    assert status == 200
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    timezone = document["components"]["schemas"]["SequenceIn"]["properties"]["timezone"]
    assert timezone["type"] == "string"  # not an enum of ~600 names
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(document))
    generator = Path(sys.executable).parent / "openapi-python-client"
    made = subprocess.run(
        [str(generator), "generate", "--path", str(spec), "--meta", "none",
         "--output-path", str(tmp_path / "es_client")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        es_client = importlib.import_module("es_client")
        schedule = importlib.import_module("es_client.api.emails.schedule_email")
        models = importlib.import_module("es_client.models")
    finally:
        sys.path.remove(str(tmp_path))
    with es_client.AuthenticatedClient(base_url=api.base, token=api.token) as client:
        await _schedule_with(client, schedule, models, pool)


async def _schedule_with(client: Any, schedule: Any, models: Any, pool: asyncpg.Pool) -> None:
    email = models.EmailIn(to="bob@example.test", subject="Hello", body_text="Hi Bob",
                           sender="ana@acme.test", idempotency_key="generated-1")  # fmt: skip
    answer = await asyncio.to_thread(schedule.sync_detailed, client=client, body=email)
    assert answer.status_code == 201, answer.content
    assert isinstance(answer.parsed, models.EmailScheduled)
    assert await pool.fetchval(
        "SELECT email FROM leads WHERE id = $1", answer.parsed.id
    ) == "bob@example.test"  # fmt: skip
    email.sender = "nobody@acme.test"
    email.idempotency_key = "generated-2"
    refused = await asyncio.to_thread(schedule.sync_detailed, client=client, body=email)
    assert refused.status_code == 404
    assert isinstance(refused.parsed, models.ProblemDetail)
    assert "nobody@acme.test" in refused.parsed.detail


async def test_every_route_answers_bad_input_with_a_problem_never_a_500(api: Client) -> None:
    """schemathesis against the OpenAPI schema, every operation: no 5xx, every response as
    the schema documents it (status, content type, body), bad input refused. (A valid
    request may still be refused when it names something that does not exist, such as a
    sender, or holds a template that does not compile: not checked here.)"""
    schema = schemathesis.openapi.from_url(api.base + "/api/v1/openapi.json")
    auth = {"Authorization": f"Bearer {api.token}"}
    operations: list[Any] = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 8

    def run(operation: Any) -> None:
        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,  # the same examples on every run: CI is reproducible
        )
        def check(case: Any) -> None:
            case.call_and_validate(
                headers=auth, excluded_checks=[schemathesis.checks.positive_data_acceptance]
            )

        check()

    for operation in operations:
        await asyncio.to_thread(run, operation)


async def test_sequences_steps_and_senders(api: Client, pool: asyncpg.Pool) -> None:
    status, _, sender = api.call(
        "POST",
        "/api/v1/senders",
        {"email": "ana@acme.test", "hourly_limit": 50, "min_gap_seconds": 60},
    )
    assert status == 201
    assert api.call("POST", "/api/v1/senders", {"email": "ANA@acme.test"})[0] == 409
    status, _, seq = api.call(
        "POST",
        "/api/v1/sequences",
        {"name": "Welcome", "timezone": "Europe/Berlin", "send_days": [1, 2, 3, 4, 5],
         "send_from": "09:00", "send_until": "24:00", "senders": ["ana@acme.test"]},
    )  # fmt: skip
    assert status == 201, seq
    got = api.call("GET", f"/api/v1/sequences/{seq['id']}")[2]
    assert (got["send_from"], got["send_until"], got["sender_ids"]) == ("09:00:00", None, [1])
    # A name is how people (and `ops import --sequence`) name a sequence: one each.
    status, _, problem = api.call("POST", "/api/v1/sequences", {"name": "Welcome"})
    assert (status, problem["detail"]) == (409, f"a sequence named 'Welcome' exists ({seq['id']})")
    status, _, problem = api.call(
        "POST", "/api/v1/sequences", {"name": "x", "timezone": "Mars/Olympus"}
    )
    assert (status, problem["errors"][0]["field"]) == (422, "timezone")
    status, _, problem = api.call(
        "PUT", f"/api/v1/sequences/{seq['id']}/steps/1", {"subject": "Hi {{ name", "body_text": "b"}
    )
    assert (status, problem["errors"][0]["field"]) == (422, "subject")
    assert "syntax error" in problem["detail"]
    step = {"subject": "Hi {{ first_name }}", "body_text": "Hello", "wait_seconds": 0}
    assert api.call("PUT", f"/api/v1/sequences/{seq['id']}/steps/1", step)[0] == 200
    assert [s["position"] for s in api.call("GET", f"/api/v1/sequences/{seq['id']}/steps")[2]] == [
        1
    ]
    assert api.call("POST", f"/api/v1/sequences/{seq['id']}/pause")[2]["status"] == "paused"
    assert api.call("POST", f"/api/v1/sequences/{seq['id']}/resume")[2]["status"] == "active"
    status, _, changed = api.call(
        "PATCH", f"/api/v1/senders/{sender['id']}", {"hourly_limit": None, "name": "Ana"}
    )
    assert (status, changed["replanned"]) == (200, 0)
    row = await pool.fetchrow("SELECT name, hourly_limit, min_gap_seconds FROM senders")
    assert tuple(row or ()) == ("Ana", None, 60)
    # The change is in the audit trail: this token, this door, before and after.
    entries = api.call("GET", f"/api/v1/audit?target=senders:{sender['id']}&door=api")[2]
    change = next(e for e in entries["items"] if e["action"] == "update")
    assert (change["actor"], change["before"]["hourly_limit"], change["after"]["hourly_limit"],
            change["after"]["name"]) == ("crm", 50, None, "Ana")  # fmt: skip
    assert "smtp_password" not in change["after"]
    assert (
        await pool.fetchval("SELECT data->>'actor' FROM events WHERE type = 'sender_changed'")
        == "crm"
    )
    # Caps per recipient provider are merged in; null removes one; an unknown provider or a
    # cap of 0 is refused and changes nothing.
    path = f"/api/v1/senders/{sender['id']}"
    assert api.call("PATCH", path, {"provider_caps": {"google": 200, "yahoo": 50}})[0] == 200
    assert api.call("PATCH", path, {"provider_caps": {"yahoo": None}})[0] == 200
    for bad in ({"aol": 5}, {"google": 0}, {"google": "many"}):
        status, _, problem = api.call("PATCH", path, {"provider_caps": bad})
        assert status == 422, problem
    listed = api.call("GET", "/api/v1/senders")[2]["items"]
    assert (listed[0]["provider_caps"], listed[0]["paced"]) == ({"google": 200}, True)


async def test_webhook_endpoints_over_rest(api: Client, pool: asyncpg.Pool) -> None:
    """The secret is in the creating answer only; a private target is refused (this API
    runs without WEBHOOK_ALLOW_PRIVATE); unknown event types are a 422; delete is 204."""
    status, _, made = api.call(
        "POST", "/api/v1/webhooks",
        {"url": "https://crm.example.com/hooks", "event_types": ["lead.replied", "lead.sent"],
         "description": "CRM"},
    )  # fmt: skip
    assert status == 201, made
    assert made["secret"].startswith("whsec_")
    listed = api.call("GET", "/api/v1/webhooks")[2]["items"]
    assert [(w["id"], w["url"], w["pending"]) for w in listed] == [
        (made["id"], "https://crm.example.com/hooks", 0)
    ]
    assert made["secret"] not in json.dumps(listed)
    for body, field in (
        ({"url": "http://127.0.0.1:9000/x", "event_types": ["lead.sent"]}, "url"),
        ({"url": "https://10.0.0.5/x", "event_types": ["lead.sent"]}, "url"),
        ({"url": "https://crm.example.com/x", "event_types": ["lead.opened"]}, "event_types.0"),
    ):
        status, _, problem = api.call("POST", "/api/v1/webhooks", body)
        assert (status, problem["errors"][0]["field"]) == (422, field), problem
    status, _, queued = api.call("POST", f"/api/v1/webhooks/{made['id']}/test")
    assert status == 202
    status, _, page = api.call("GET", f"/api/v1/webhooks/{made['id']}/deliveries?status=pending")
    assert [d["id"] for d in page["items"]] == [queued["delivery_id"]]
    assert api.call("DELETE", f"/api/v1/webhooks/{made['id']}")[0] == 204
    assert api.call("DELETE", f"/api/v1/webhooks/{made['id']}")[0] == 404
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 0


async def test_replies_over_rest_without_any(api: Client) -> None:
    """The inbox's routes answer an empty inbox, an unknown reply and a bad filter (the
    browser test drives them with real replies through the console)."""
    status, _, page = api.call("GET", "/api/v1/replies?handled=false&intent=interested")
    assert (status, page["items"]) == (200, [])
    assert api.call("GET", "/api/v1/replies?intent=angry")[0] == 422
    assert api.call("GET", "/api/v1/replies/12345")[0] == 404
    assert api.call("POST", "/api/v1/replies/12345/handled")[0] == 404
    status, _, problem = api.call("POST", "/api/v1/replies/12345/answer", {"body_text": "Hi"})
    assert (status, problem["detail"]) == (404, "no reply 12345")
    assert api.call("POST", "/api/v1/replies/12345/answer", {"body_text": ""})[0] == 422


async def test_erasing_a_person_over_rest(api: Client, pool: asyncpg.Pool) -> None:
    await pool.execute(SETUP)
    email = await pool.fetchval("SELECT email FROM leads ORDER BY id LIMIT 1")
    status, _, done = api.call("DELETE", f"/api/v1/people/{email}")
    assert (status, done["leads"]) == (200, 1), done
    assert await pool.fetchval("SELECT count(*) FROM leads WHERE email = $1", email) == 0
    assert await pool.fetchval("SELECT is_suppressed($1)", email)
    status, _, again = api.call("DELETE", f"/api/v1/people/{email.upper()}")
    assert (status, again["leads"], again["address_sha256"]) == (200, 0, done["address_sha256"])
    assert api.call("DELETE", "/api/v1/people/not-an-address")[0] == 422
    assert api.call("DELETE", "/api/v1/people/*@x.test")[0] == 422
    actor = await pool.fetchval("SELECT actor FROM audit_log WHERE door = 'api' LIMIT 1")
    assert actor == "crm"


async def test_import_over_http_json_and_csv(api: Client, pool: asyncpg.Pool) -> None:
    await pool.execute(SETUP)
    status, _, report = api.call(
        "POST",
        "/api/v1/sequences/1/leads",
        [{"email": "new@x.test", "first_name": "New", "plan": "pro"}, {"email": "bad"}, 7,
         {"email": "L1@x.test"}],
    )  # fmt: skip
    assert status == 200, report
    assert (report["imported"], report["duplicates"], report["rejected"]) == (1, 1, 2)
    assert [r["line"] for r in report["rejections"]] == [2, 3]
    req_csv = b"email,first_name\ncsv@x.test,Cee\nnope,No\n"
    status, _, report = api.call(
        "POST", "/api/v1/sequences/1/leads?dry_run=true", raw=req_csv, content_type="text/csv"
    )
    assert (status, report["imported"], report["rejected"], report["dry_run"]) == (200, 1, 1, True)
    assert await pool.fetchval("SELECT count(*) FROM leads WHERE email = 'csv@x.test'") == 0
    assert api.call("POST", "/api/v1/sequences/99/leads", [])[0] == 404
    unsupported = api.call(
        "POST", "/api/v1/sequences/1/leads", raw=b"x", content_type="application/xml"
    )
    assert unsupported[0] == 415
    # What a stranger may send: more leads than the schema allows, JSON nested past any
    # parser's depth, a file in an encoding that is not UTF-8. Each one clear 422.
    too_many = [{"email": f"n{i}@x.test"} for i in range(10_001)]
    status, _, problem = api.call("POST", "/api/v1/sequences/1/leads", too_many)
    assert (status, problem["detail"]) == (
        422,
        "body: 10001 leads, at most 10000 in one request (send CSV for more)",
    )
    status, _, problem = api.call(
        "POST", "/api/v1/sequences/1/leads", raw=b"[" * 100_000, content_type="application/json"
    )
    assert (status, problem["detail"]) == (422, "body: not JSON: nested too deep")
    status, _, problem = api.call(
        "POST", "/api/v1/sequences/1/leads", raw="email\nren\xe9@x.test\n".encode("latin-1"),
        content_type="text/csv",
    )  # fmt: skip
    assert status == 422
    assert problem["detail"].startswith("body: line 2: not UTF-8 text")
    assert await pool.fetchval("SELECT count(*) FROM leads WHERE email ~ '^n[0-9]+@x[.]test$'") == 0


def _post_raw(base: str, path: str, token: str, body: bytes, *, chunked: bool) -> tuple[int, Any]:
    """POST `body` whole before reading the answer (with a Content-Length, or chunked without
    one), as a client that does not wait for an early answer does."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", path)
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Content-Type", "text/csv")
    if chunked:
        conn.putheader("Transfer-Encoding", "chunked")
    else:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    try:
        if chunked:
            for i in range(0, len(body), 65536):
                part = body[i : i + 65536]
                conn.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            conn.send(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered early and closed; the answer is still to be read
    resp = conn.getresponse()
    answer = resp.read()
    conn.close()
    return resp.status, json.loads(answer)


@pytest.mark.parametrize(
    "api", [{"API_MAX_BODY_BYTES": str(2**20), "API_MAX_JSON_BYTES": str(2**18)}], indirect=True
)
async def test_a_body_over_its_limit_is_refused_and_nothing_of_it_stored(
    api: Client, pool: asyncpg.Pool
) -> None:
    await pool.execute(SETUP)
    before = await pool.fetchval("SELECT count(*) FROM leads")
    # JSON over API_MAX_JSON_BYTES: refused by its Content-Length, before it is read.
    leads = [{"email": f"j{i}@x.test", "company": "x" * 200} for i in range(2_000)]
    status, headers, problem = api.call("POST", "/api/v1/sequences/1/leads", leads)
    assert (status, problem["title"]) == (413, "Request body too large")
    assert problem["detail"] == "a JSON body larger than 262,144 bytes (0.25 MiB)"
    assert headers["content-type"] == "application/problem+json"
    # CSV over API_MAX_BODY_BYTES, declared or not (chunked): the same, once 1 MiB is read.
    rows = b"email,company\n" + b"".join(
        b"c%d@x.test,%s\n" % (i, b"y" * 100) for i in range(12_000)
    )
    assert len(rows) > 2**20
    for chunked in (False, True):
        status, problem = _post_raw(
            api.base, "/api/v1/sequences/1/leads", api.token or "", rows, chunked=chunked
        )
        assert (status, problem["detail"]) == (413, "a body larger than 1,048,576 bytes (1 MiB)"), (
            chunked
        )
    assert await pool.fetchval("SELECT count(*) FROM leads") == before
    # Under the limits everything is as before, and the API still answers.
    status, _, report = api.call("POST", "/api/v1/sequences/1/leads", leads[:100])
    assert (status, report["imported"]) == (200, 100)
    assert api.call("GET", "/healthz")[0] == 200


async def test_a_scheduled_email_arrives_once_whatever_the_retries(  # noqa: PLR0917
    api: Client, pool: asyncpg.Pool, database: str, amqp_prefix: str, smtp: SmtpServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    await pool.execute("INSERT INTO senders (email, name) VALUES ('ana@acme.test', 'Ana')")
    daemons = Daemons(daemon_env(database, amqp_prefix, smtp.port), tmp_path / "daemons")
    (tmp_path / "daemons").mkdir()
    worker_metrics = free_port()
    for module in ("scheduler", "pump", "worker"):
        daemons.start(module, METRICS_PORT=str(worker_metrics) if module == "worker" else "")
    email = {
        "to": "bob@example.test",
        "subject": "Your invoice {{ not a template }}",
        "body_text": "Hello Bob",
        "body_html": "<p>Hello <b>Bob</b></p>",
        "sender": "ana@acme.test",
        "idempotency_key": "invoice-42",
    }
    try:
        # The same request ten times at once (a client retrying): one email.
        answers = await asyncio.gather(
            *(asyncio.to_thread(api.call, "POST", "/api/v1/emails", email) for _ in range(10))
        )
        assert sorted(a[0] for a in answers) == [200] * 9 + [201], [(a[0], a[2]) for a in answers]
        assert len({a[2]["id"] for a in answers}) == 1
        later = {**email, "idempotency_key": None, "send_at": "2100-01-01T09:00:00Z"}
        status, _, scheduled = api.call("POST", "/api/v1/emails", later)
        assert (status, scheduled["send_at"]) == (201, "2100-01-01T09:00:00Z")
        await wait_for(lambda: len(smtp.received) == 1, timeout=30)
        await asyncio.sleep(1)
        await _status_shows_the_run(api, worker_metrics)
    finally:
        codes = daemons.stop_all()
    assert all(c == 0 for c in codes.values()), daemons.logs()[-2000:]
    (got,) = smtp.received
    assert got.message["Subject"] == "Your invoice {{ not a template }}"  # sent as given
    html = got.message.get_body(("html",))
    assert html is not None
    assert "<b>Bob</b>" in html.get_content()
    assert api.call("POST", "/api/v1/emails", {**email, "sender": "nobody@acme.test",
                                               "idempotency_key": "x"})[0] == 404  # fmt: skip
    status, _, problem = api.call("POST", "/api/v1/emails", {**email, "to": "bad..addr@x.test",
                                                             "idempotency_key": "y"})  # fmt: skip
    assert (status, problem["errors"][0]["field"]) == (422, "to")


async def _status_shows_the_run(api: Client, worker_metrics: int) -> None:
    """GET /api/v1/status and the metrics, while the daemons that sent the email run."""

    def replicas() -> list[str]:
        view = api.call("GET", "/api/v1/status")[2]
        return sorted(r["service"] for r in view["pipeline"]["replicas"])

    every = ["api", "pump", "scheduler", "worker"]
    assert await wait_for(lambda: replicas() == every, timeout=20, interval=0.5)
    status, _, view = api.call("GET", "/api/v1/status")
    assert status == 200
    (one_off,) = view["sequences"]
    assert one_off["kind"] == "one_off"
    assert {k: v for k, v in one_off["leads"].items() if v} == {"completed": 1, "active": 1}
    assert one_off["last_24h"]["sent"] == 1
    assert view["senders"][0]["sent_last_day"] == 1
    assert view["pipeline"]["queue_messages"] == 0
    assert view["pipeline"]["dead_letters"] == 0
    assert Client(api.base, None).call("GET", "/api/v1/status")[0] == 401

    # The API's scrape names senders and sequences: a token, like the REST API.
    assert Client(api.base, None).call("GET", "/metrics")[0] == 401
    status, headers, text = api.call("GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert 'email_scheduler_leads{sequence_id="1",status="completed"} 1.0' in text
    assert 'email_scheduler_sequence_info{name="One-off emails",sequence_id="1"} 1.0' in text
    assert 'email_scheduler_sender_info{address="ana@acme.test",sender="1"} 1.0' in text
    assert 'email_scheduler_daemon_replicas{service="worker"} 1.0' in text
    with urllib.request.urlopen(f"http://127.0.0.1:{worker_metrics}/metrics") as resp:
        worker = resp.read().decode()
    assert 'email_scheduler_sends_total{outcome="sent",sender="1"} 1.0' in worker
    assert "email_scheduler_smtp_seconds_count 1.0" in worker
    # Each process exports its own series, under one name per quantity, lint-clean.
    assert promlint.lint(text) == []
    assert promlint.lint(worker) == []
    ours = {n for n in promlint.names(worker) if n.startswith("email_scheduler_")}
    assert ours == {"email_scheduler_sends", "email_scheduler_messages",
                    "email_scheduler_smtp_seconds", "email_scheduler_claim_batch_size",
                    "email_scheduler_record_batch_size"}, ours  # fmt: skip
    assert "email_scheduler_sends" not in promlint.names(text)
