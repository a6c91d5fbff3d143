"""`python -m ops` as a subprocess against a real database: lead, sequence, suppression and
token commands, their exit statuses, and the events each change writes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import aio_pika
import asyncpg

from broker.topology import Names, connect, declare
from tests.conftest import AMQP_URL
from tests.processes import ROOT

SETUP = """
    INSERT INTO senders (email) VALUES ('s@acme.test');
    INSERT INTO sequences (name) VALUES ('Welcome');
    INSERT INTO sequence_steps (sequence_id, position, subject, body_text)
    VALUES (1, 1, 's', 'b'), (1, 2, NULL, 'b2');
    INSERT INTO leads (sequence_id, sender_id, email) VALUES
        (1, 1, 'a@x.test'), (1, 1, 'b@x.test'), (1, 1, 'c@x.test');
"""


def ops(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    return ops_env(database, {}, *args)


def ops_env(database: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "DATABASE_URL": database, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _events(pool: asyncpg.Pool, kind: str) -> list[tuple[int, str]]:
    rows = await pool.fetch(
        "SELECT lead_id, data->>'actor' AS actor FROM events WHERE type = $1 ORDER BY lead_id",
        kind,
    )
    return [(r["lead_id"], r["actor"]) for r in rows]


async def test_lead_actions_follow_the_lifecycle_and_record_the_actor(
    pool: asyncpg.Pool, database: str
) -> None:
    await pool.execute(SETUP)
    done = ops(database, "lead", "pause", "1", "b@x.test")
    assert done.returncode == 0, done.stderr
    assert await _events(pool, "paused") == [(1, "cli"), (2, "cli")]
    # Pausing again: nothing can change, exit 1; one of two: partly done, exit 3.
    assert ops(database, "lead", "pause", "1").returncode == 1
    partly = ops(database, "lead", "resume", "1", "3", "--json")
    assert partly.returncode == 3
    assert [o["changed"] for o in json.loads(partly.stdout)] == [True, False]
    assert await pool.fetchval("SELECT status FROM leads WHERE id = 1") == "active"
    assert ops(database, "lead", "stop", "3").returncode == 0
    assert await _events(pool, "stopped") == [(3, "cli")]
    # Retry makes a failed lead's failed step sendable again.
    await pool.execute("""UPDATE leads SET status = 'failed' WHERE id = 2;
        INSERT INTO deliveries (lead_id, step, message_id, status, attempts)
        VALUES (2, 1, '<m@x>', 'failed', 5)""")
    assert ops(database, "lead", "retry", "2").returncode == 0
    row = await pool.fetchrow(
        "SELECT l.status, d.status AS d, d.attempts FROM leads l JOIN deliveries d ON d.lead_id = l.id"
    )
    assert row is not None
    assert tuple(row) == ("active", "deferred", 0)
    shown = ops(database, "lead", "show", "b@x.test")
    assert shown.returncode == 0
    assert "lead 2 <b@x.test>: active at step 1" in shown.stdout
    assert "retried" in shown.stdout
    missing = ops(database, "lead", "show", "nobody@x.test")
    assert (missing.returncode, missing.stderr.strip()) == (1, "ops lead: no lead 'nobody@x.test'")


async def test_sequence_suppression_and_token_commands(pool: asyncpg.Pool, database: str) -> None:
    await pool.execute(SETUP)
    assert ops(database, "sequence", "pause", "Welcome").returncode == 0
    assert await pool.fetchval("SELECT status FROM sequences") == "paused"
    assert ops(database, "sequence", "pause", "Nope").returncode == 1
    added = ops(database, "suppress", "add", "A@x.test")
    assert added.returncode == 0
    assert "1 lead(s) stopped" in added.stdout
    assert ops(database, "suppress", "add", "*@Spam.test").returncode == 0
    assert ops(database, "suppress", "add", "not an address").returncode == 1
    listed = json.loads(ops(database, "suppress", "list", "--json").stdout)
    assert [s["email"] for s in listed] == ["*@spam.test", "a@x.test"]
    assert ops(database, "suppress", "remove", "*@spam.test").returncode == 0
    created = ops(database, "token", "create", "crm")
    token = created.stdout.strip()
    assert created.returncode == 0
    assert token.startswith("es_")
    assert token.encode() not in (await pool.fetchval("SELECT token_sha256 FROM api_tokens"))
    assert ops(database, "token", "create", "crm").returncode == 1  # one live token per name
    assert ops(database, "token", "revoke", "crm").returncode == 0
    assert ops(database, "token", "create").returncode == 2  # usage
    viewer = ops(database, "token", "create", "dash", "--role", "Viewer")
    assert viewer.returncode == 0, viewer.stderr
    assert "(viewer)" in viewer.stderr
    bad = ops(database, "token", "create", "x", "--role", "root")
    assert bad.returncode == 2
    assert "'root' is not a role (one of viewer, operator, admin)" in bad.stderr
    listed_tokens = json.loads(ops(database, "token", "list", "--json").stdout)
    assert [(t["name"], t["role"]) for t in listed_tokens] == [
        ("crm", "operator"),
        ("dash", "viewer"),
    ]
    assert ops(database, "lead", "dance", "1").returncode == 2


async def test_sender_set_plans_waiting_leads_again_and_no_follow_up_skips_its_wait(
    pool: asyncpg.Pool, database: str
) -> None:
    await pool.execute("""
        INSERT INTO senders (email, hourly_limit) VALUES ('s@acme.test', 1);
        INSERT INTO sequences (name) VALUES ('Two');
        INSERT INTO sequence_steps (sequence_id, position, wait_seconds, subject, body_text)
        VALUES (1, 1, 0, 's', 'b'), (1, 2, 86400, NULL, 'b2');
        INSERT INTO leads (sequence_id, sender_id, email, next_run_at) VALUES
            (1, 1, 'first@x.test', now() + interval '50 minutes'),  -- deferred by the cap
            (1, 1, 'follow@x.test', now() + interval '50 minutes'),
            (1, 1, 'retry@x.test', now() + interval '50 minutes');
        -- follow@ sent step 1 an hour ago: its follow-up waits a day from then
        UPDATE leads SET current_step = 2, last_sent_at = now() - interval '1 hour'
        WHERE email = 'follow@x.test';
        -- retry@ waits out a retry's backoff
        INSERT INTO deliveries (lead_id, step, message_id, status, attempts)
        SELECT id, 1, '<r@x>', 'deferred', 1 FROM leads WHERE email = 'retry@x.test';
        UPDATE leads SET next_run_at = now() + interval '10 minutes' WHERE email = 'retry@x.test'
    """)
    before = await _due(pool)
    done = ops(
        database, "sender", "set", "S@acme.test", "--hourly", "none", "--min-gap", "5", "--json"
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["changes"], out["replanned"]) == ({"hourly_limit": None, "min_gap_seconds": 5}, 1)
    after = await _due(pool)
    assert after["first@x.test"] < before["first@x.test"]  # due at once now
    assert after["follow@x.test"] == before["follow@x.test"]  # its wait is not over
    assert after["retry@x.test"] == before["retry@x.test"]  # the backoff holds
    row = await pool.fetchrow("SELECT hourly_limit, min_gap_seconds, paced FROM senders")
    assert tuple(row or ()) == (None, 5, True)
    assert ops(database, "sender", "set", "s@acme.test", "--hourly", "0").returncode == 1
    assert ops(database, "sender", "set", "s@acme.test", "--hourly", "many").returncode == 2
    assert ops(database, "sender", "set", "nobody@acme.test", "--daily", "5").returncode == 1


async def _due(pool: asyncpg.Pool) -> dict[str, datetime]:
    return {
        r["email"]: r["next_run_at"]
        for r in await pool.fetch("SELECT email, next_run_at FROM leads")
    }


async def test_dead_letters_list_show_replay_and_purge(
    pool: asyncpg.Pool, database: str, amqp_prefix: str
) -> None:
    names = Names.from_prefix(amqp_prefix)
    conn = await connect(AMQP_URL, name="test")
    try:
        ch = await conn.channel(publisher_confirms=True)
        topo = await declare(ch, names)
        for i in (11, 12, 13):
            await topo.dead_exchange.publish(
                aio_pika.Message(b'{"v":2}', message_id=str(i)), routing_key="send"
            )
    finally:
        await conn.close()
    await pool.execute(
        """INSERT INTO events (type, data) VALUES
           ('message_rejected', '{"outbox_id": "12", "error": "no outbox row 12"}')"""
    )
    env = ("AMQP_URL", AMQP_URL, "AMQP_PREFIX", amqp_prefix)

    def dl(*args: str) -> subprocess.CompletedProcess[str]:
        return ops_env(database, dict(zip(env[::2], env[1::2], strict=True)), "dead-letters", *args)

    listed = dl("list", "--json")
    assert listed.returncode == 0, listed.stderr
    letters = {d["outbox_id"]: d for d in json.loads(listed.stdout)}
    assert set(letters) == {"11", "12", "13"}
    assert letters["12"]["reason"] == "no outbox row 12"  # the worker's reason
    assert "no outbox row 12" in dl("show", "12").stdout
    assert dl("show", "99").returncode == 1
    replayed = dl("replay", "12", "99")
    assert replayed.returncode == 3  # one of the two was no dead letter
    assert dl("purge").returncode == 1  # nothing named, no --all
    assert json.loads(dl("purge", "11", "--json").stdout) == ["11"]
    assert [d["outbox_id"] for d in json.loads(dl("list", "--json").stdout)] == ["13"]


IMPORT_SETUP = """
    INSERT INTO senders (email, name) VALUES ('ana@acme.test', 'Ana');
    INSERT INTO sequences (name) VALUES ('Welcome');
    INSERT INTO sequence_steps (sequence_id, position, subject, body_text)
    VALUES (1, 1, 'Hi {{ first_name }}', 'Your plan: {{ plan }}{{ seats | default("") }}');
    INSERT INTO leads (sequence_id, email, attributes) VALUES (1, 'old@x.test', '{"plan": "a"}');
"""

CSV = """email,first_name,company,timezone,plan,seats
bob@x.test,Bob,Initech,Europe/Berlin,pro,3
carol@x.test,Carol,,,,
BOB@X.test,Bobby,Initech,,team,
old@x.test,Old,,,pro,
not an address,X,,,pro,
eve@x.test,Eve,,Mars/Olympus,pro,
dan@x.test,"Dan, Jr",Umbrella,,pro,1
short@x.test,Short
"""


async def test_import_csv_checks_each_row_and_is_idempotent(
    pool: asyncpg.Pool, database: str, tmp_path: Path
) -> None:
    await pool.execute(IMPORT_SETUP)
    path = tmp_path / "leads.csv"
    path.write_text(CSV)
    dry = ops(database, "import", str(path), "--sequence", "Welcome", "--dry-run", "--json")
    assert dry.returncode == 3, dry.stderr
    report = json.loads(dry.stdout)
    assert (report["imported"], report["duplicates"], report["rejected"]) == (2, 2, 4)
    assert await pool.fetchval("SELECT count(*) FROM leads") == 1  # a dry run stores nothing

    done = ops(database, "import", str(path), "--sequence", "Welcome")
    assert done.returncode == 3
    assert done.stdout.strip() == "imported 2, duplicates 2, rejected 4"
    with (tmp_path / "leads.csv.rejected.csv").open(newline="") as f:
        rejected = [(row[0], row[1]) for row in csv.reader(f)][1:]
    assert rejected == [
        ("3", "step 1 body_text: 'plan' is undefined"),  # carol has no plan
        ("6", "email: not a valid email address: 'not an address'"),
        ("7", "timezone: unknown timezone 'Mars/Olympus'"),
        ("9", "2 fields, the header has 6"),
    ]
    leads = {r["email"]: r for r in await pool.fetch("SELECT * FROM leads")}
    assert set(leads) == {"old@x.test", "bob@x.test", "dan@x.test"}
    assert leads["dan@x.test"]["first_name"] == "Dan, Jr"
    assert leads["bob@x.test"]["attributes"] == {"plan": "pro", "seats": "3"}
    assert leads["bob@x.test"]["timezone"] == "Europe/Berlin"

    again = ops(database, "import", str(path), "--sequence", "Welcome", "--json")
    assert json.loads(again.stdout)["imported"] == 0  # the same file twice adds nothing
    update = ops(
        database, "import", str(path), "--sequence", "Welcome", "--on-duplicate", "update", "--json"
    )
    assert json.loads(update.stdout)["updated"] == 3  # bob (as Bobby, the later row), old, dan
    assert await pool.fetchval("SELECT first_name FROM leads WHERE email = 'bob@x.test'") == "Bobby"
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text(
        '{"email": "fay@x.test", "attributes": {"plan": "pro"}, "seats": 2}\n'
        '{"email": "gil@x.test", "plan": ["no"]}\n'
        "not json\n"
    )
    res = json.loads(ops(database, "import", str(jsonl), "--sequence", "Welcome", "--json").stdout)
    assert (res["imported"], res["rejected"]) == (1, 2)
    assert (
        ops(database, "import", str(tmp_path / "none.csv"), "--sequence", "Welcome").returncode == 2
    )
    assert ops(database, "import", str(path), "--sequence", "Nope").returncode == 1


async def test_status_prints_sequences_senders_and_the_pipeline(
    pool: asyncpg.Pool, database: str, amqp_prefix: str
) -> None:
    await pool.execute(SETUP)
    await pool.execute("UPDATE leads SET status = 'completed' WHERE id = 3")
    await pool.execute("INSERT INTO events (lead_id, step, type) VALUES (3, 1, 'sent')")
    env = {"AMQP_URL": AMQP_URL, "AMQP_PREFIX": amqp_prefix}
    shown = ops_env(database, env, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    (welcome,) = view["sequences"]
    assert (welcome["leads"]["active"], welcome["leads"]["completed"]) == (2, 1)
    assert welcome["last_24h"]["sent"] == 1
    assert view["pipeline"]["due"] == 2
    assert view["pipeline"]["queue_messages"] is None  # this prefix has no queues: unknown
    text = ops_env(database, env, "status").stdout
    assert "'Welcome' [active]: active 2, completed 1" in text
    assert "due now 2" in text
    assert "send queue unknown (broker not reachable)" in text
    assert ops_env(database, {}, "status").returncode == 2  # no AMQP_URL: named, exit 2


def test_dkim_keys_are_made_once_and_their_records_shown(tmp_path: Path) -> None:
    env = {"DKIM_KEYS_DIR": str(tmp_path)}
    made = ops_env("postgresql://unused@127.0.0.1/none", env, "dkim", "create", "acme.test", "s1")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith('s1._domainkey.acme.test IN TXT "v=DKIM1; k=rsa; p=')
    assert '" "' in made.stdout  # a 2048-bit key's record is longer than one DNS string
    assert oct((tmp_path / "acme.test" / "s1.pem").stat().st_mode & 0o777) == "0o600"
    again = ops_env("postgresql://unused@127.0.0.1/none", env, "dkim", "create", "acme.test", "s1")
    assert again.returncode == 1
    assert "exists already" in again.stderr
    ed = ops_env("x", env, "dkim", "create", "beta.test", "e1", "--algorithm", "ed25519")
    assert "k=ed25519" in ed.stdout
    shown = json.loads(ops_env("x", env, "dkim", "records", "--json").stdout)
    assert [(k["domain"], k["algorithm"]) for k in shown] == [
        ("acme.test", "rsa-sha256"), ("beta.test", "ed25519-sha256"),
    ]  # fmt: skip
    assert ops_env("x", {}, "dkim", "records").returncode == 2  # no DKIM_KEYS_DIR
    # A key's path is made of a domain and a selector: nothing else gets written anywhere.
    for domain, selector in (("../../x", "s1"), ("acme.test", "../s1"), ("acme.test/..", "s")):
        bad = ops_env("x", env, "dkim", "create", domain, selector)
        assert bad.returncode == 2, (domain, selector)
        assert "not a" in bad.stderr
    assert not (tmp_path.parent / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acme.test", "beta.test"]


async def test_an_import_reads_what_spreadsheets_write_and_no_row_aborts_it(
    pool: asyncpg.Pool, database: str, tmp_path: Path
) -> None:
    """A spreadsheet's export: `;`-separated, headers as people write them, a pattern the
    table refuses, a quote that never closes in the middle of the file; then the same in
    UTF-16 with a byte-order mark, one in Latin-1, and one with no address column."""
    await pool.execute(IMPORT_SETUP)
    lines = [
        "Email;First Name;Last Name;Company;Plan",
        "ann@x.test;Ann;Lee;Initech;pro",
        "*@wild.test;Wild;Card;Nowhere;pro",  # the table takes one address, not a pattern
        'eve@x.test;"Eve;Smith;Globex;pro',  # a quote that never closes
        *[f"u{i}@x.test;U{i};V;Co;pro" for i in range(60)],
    ]
    path = tmp_path / "export.csv"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    dry = ops(database, "import", str(path), "--sequence", "Welcome", "--dry-run")
    assert dry.returncode == 3, dry.stderr
    assert (
        dry.stdout.strip() == "would import 61, duplicates 0, rejected 2 (dry run: nothing stored)"
    )
    done = ops(database, "import", str(path), "--sequence", "Welcome", "--json")
    assert done.returncode == 3, done.stderr
    assert json.loads(done.stdout)["imported"] == 61
    with (tmp_path / "export.csv.rejected.csv").open(newline="", encoding="utf-8") as f:
        rejected = list(csv.reader(f))[1:]
    assert [(r[0], r[2]) for r in rejected] == [("3", lines[2]), ("4", lines[3])]  # as read
    assert "pattern" in rejected[0][1]
    assert rejected[1][1] == "a quoted field opened on this line is never closed"
    ann = await pool.fetchrow("SELECT * FROM leads WHERE email = 'ann@x.test'")
    assert ann is not None
    assert (ann["first_name"], ann["last_name"], ann["attributes"]) == (
        "Ann",
        "Lee",
        {"plan": "pro"},
    )

    utf16 = tmp_path / "utf16.csv"
    utf16.write_text("email\tfirst_name\tplan\r\nzoe@x.test\tZoë\tpro\r\n", encoding="utf-16")
    done = ops(database, "import", str(utf16), "--sequence", "Welcome")
    assert (done.returncode, done.stdout.strip()) == (0, "imported 1, duplicates 0, rejected 0")
    assert await pool.fetchval("SELECT first_name FROM leads WHERE email = 'zoe@x.test'") == "Zoë"

    # A rule of the table's that the row checks do not know: the row is rejected with the
    # table's reason, the rest of its batch is stored.
    await pool.execute(
        "ALTER TABLE leads ADD CONSTRAINT no_quentin CHECK (first_name IS DISTINCT FROM 'Quentin')"
    )
    batch = tmp_path / "batch.csv"
    batch.write_text("email,first_name,plan\nq@x.test,Quentin,pro\nr@x.test,Rita,pro\n")
    done = ops(database, "import", str(batch), "--sequence", "Welcome")
    assert done.returncode == 3
    assert done.stdout.strip() == "imported 1, duplicates 0, rejected 1"
    with (tmp_path / "batch.csv.rejected.csv").open(newline="", encoding="utf-8") as f:
        (_, (line, reason, text)) = list(csv.reader(f))
    assert (line, text) == ("2", "q@x.test,Quentin,pro")
    assert reason.startswith("refused by the database: ")
    assert "no_quentin" in reason

    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("email,first_name,plan\nrene@x.test,René,pro\n".encode("latin-1"))
    refused = ops(database, "import", str(latin1), "--sequence", "Welcome")
    assert refused.returncode == 1
    assert "line 2: not UTF-8 text" in refused.stderr
    assert "nothing imported" in refused.stderr
    assert not (tmp_path / "latin1.csv.rejected.csv").exists()

    nameless = tmp_path / "nameless.csv"
    nameless.write_text("E-mal,Name\nx@x.test,X\n", encoding="utf-8")
    refused = ops(database, "import", str(nameless), "--sequence", "Welcome", "--json")
    assert refused.returncode == 1  # a header error is the file's, not a row's
    error = json.loads(refused.stdout)["error"]
    assert "no email column (did you mean 'e_mal'?)" in error, error
    assert await pool.fetchval("SELECT count(*) FROM leads WHERE email = 'x@x.test'") == 0


async def test_senders_sequences_and_steps_are_made_from_the_command_line(
    pool: asyncpg.Pool, database: str, tmp_path: Path
) -> None:
    def ok(*args: str) -> str:
        done = ops(database, *args)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    ok("sender", "create", "ana@acme.test", "--name", "Ana", "--hourly", "20", "--min-gap", "90")
    ok("sender", "set", "ana@acme.test", "--name", "Ana Lima")
    ok("sequence", "create", "Welcome", "--timezone", "Europe/Lisbon", "--days", "1-5",
       "--window", "09:00-17:30", "--sender", "ana@acme.test")  # fmt: skip
    body = tmp_path / "body.txt"
    body.write_text("Hi {{ first_name | default('there') }},\nshall we talk?\n")
    ok(
        "step",
        "set",
        "Welcome",
        "1",
        "--subject",
        "Hello {{ first_name }}",
        "--body-file",
        str(body),
    )
    ok("step", "set", "Welcome", "2", "--reply", "--body", "Any thoughts?", "--after", "3d")
    ok(
        "sequence",
        "update",
        "Welcome",
        "--rename",
        "Welcome 2027",
        "--stop-on-company-reply",
        "yes",
    )
    sender = await pool.fetchrow("SELECT * FROM senders")
    assert sender is not None
    assert (sender["email"], sender["name"], sender["hourly_limit"], sender["min_gap_seconds"]) == (
        "ana@acme.test", "Ana Lima", 20, 90,
    )  # fmt: skip
    seq = await pool.fetchrow("SELECT * FROM sequences")
    assert seq is not None
    assert (seq["name"], seq["timezone"], seq["send_days"], str(seq["send_from"]),
            str(seq["send_until"]), seq["stop_on_company_reply"]) == (
        "Welcome 2027", "Europe/Lisbon", [1, 2, 3, 4, 5], "09:00:00", "17:30:00", True,
    )  # fmt: skip
    steps = await pool.fetch(
        "SELECT position, wait_seconds, subject, body_text FROM sequence_steps ORDER BY position"
    )
    assert [tuple(s) for s in steps] == [
        (1, 0, "Hello {{ first_name }}", body.read_text()),
        (2, 3 * 86400, None, "Any thoughts?"),
    ]
    assert await pool.fetchval("SELECT count(*) FROM sequence_senders") == 1
    shown = json.loads(ok("sequence", "show", "Welcome 2027", "--json"))
    assert [s["position"] for s in shown["steps"]] == [1, 2]
    listed = ok("sender", "list")
    assert "ana@acme.test\tAna Lima\thourly 20" in listed
    assert "Welcome 2027" in ok("sequence", "list")

    # What the REST API refuses, the command line refuses the same way: one line, exit 1
    # (with --json, a JSON error), nothing stored.
    for args, message in (
        (("sender", "create", "not-an-address"), "not an address: 'not-an-address'"),
        (("sender", "create", "ana@acme.test"), "a sender 'ana@acme.test' exists"),
        (("sender", "create", "bo@acme.test", "--hourly", "0"), "hourly_limit must be"),
        (("sequence", "create", "Other", "--timezone", "Mars/Base"), "Mars/Base"),
        (("sequence", "create", "Welcome 2027"), "exists"),
        (("step", "set", "Welcome 2027", "3", "--subject", "{{ oops", "--body", "b"), "subject"),
        (("step", "set", "Welcome 2027", "0", "--subject", "s", "--body", "b"), "position"),
        (("step", "set", "Nope", "1", "--subject", "s", "--body", "b"), "no sequence 'Nope'"),
        (("sequence", "update", "Welcome 2027"), "nothing to change"),
    ):
        done = ops(database, *args, "--json")
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert message in json.loads(done.stdout)["error"]
    bad_flag = ops(database, "sequence", "create", "X", "--window", "9-5")
    assert bad_flag.returncode == 2
    assert "not a window like 09:00-17:30: '9-5'" in bad_flag.stderr
    assert await pool.fetchval("SELECT count(*) FROM senders") == 1
    assert await pool.fetchval("SELECT count(*) FROM sequences") == 1
    assert await pool.fetchval("SELECT count(*) FROM sequence_steps") == 2


async def test_a_sender_s_guard_and_warm_up_from_the_command_line(
    pool: asyncpg.Pool, database: str
) -> None:
    await pool.execute(SETUP)
    done = ops(database, "sender", "set", "s@acme.test", "--guard-hard-bounce-rate", "3%",
               "--guard-min-sample", "50", "--warmup", "20,10", "--daily", "300")  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = await pool.fetchrow("SELECT * FROM senders WHERE email = 's@acme.test'")
    assert row is not None
    assert (round(row["guard_hard_bounce_rate"], 4), row["guard_min_sample"],
            row["warmup_start"], row["warmup_increment"], row["daily_limit"]) == (
        0.03, 50, 20, 10, 300,
    )  # fmt: skip
    assert row["warmup_started_at"] is not None
    assert row["paced"]  # a warm-up paces the sender
    status = ops_env(database, {"AMQP_URL": AMQP_URL}, "status")
    assert "warm-up: 20 a day now, growing to 300" in status.stdout, status.stdout + status.stderr
    # Refused at the door, nothing changed; a sender not paused is not resumed.
    bad = ops(database, "sender", "set", "s@acme.test", "--guard-block-rate", "150%")
    assert bad.returncode == 1
    assert "guard_block_rate must be a fraction from 1e-06 to 1" in bad.stderr
    # A rate too small for the column (a 4-byte float) is refused the same way, not an error.
    tiny = ops(database, "sender", "set", "s@acme.test", "--guard-complaint-rate", "5e-324")
    assert tiny.returncode == 1, tiny.stderr
    assert "guard_complaint_rate must be a fraction from 1e-06 to 1" in tiny.stderr
    assert ops(database, "sender", "set", "s@acme.test", "--warmup", "ten").returncode == 2
    resumed = ops(database, "sender", "resume", "s@acme.test")
    assert (resumed.returncode, resumed.stderr.strip()) == (
        1, "ops sender: sender s@acme.test is not paused"
    )  # fmt: skip
    cleared = ops(database, "sender", "set", "s@acme.test", "--warmup", "none",
                  "--guard-hard-bounce-rate", "none")  # fmt: skip
    assert cleared.returncode == 0, cleared.stderr
    row = await pool.fetchrow("SELECT * FROM senders WHERE email = 's@acme.test'")
    assert row is not None
    assert (row["warmup_start"], row["warmup_started_at"], row["guard_hard_bounce_rate"]) == (
        None, None, None,
    )  # fmt: skip
