"""`python -m ops` as a subprocess against a real database: lead, sequence, suppression and
token commands, their exit statuses, and the events each change writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import asyncpg

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
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "DATABASE_URL": database},
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
    assert ops(database, "lead", "dance", "1").returncode == 2
