"""Stop conditions: replies (one address, or the whole company where the sequence says so),
unsubscribes by SQL and by signed token, each stopping what it should and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg

from core.unsubscribe import make_token
from tests.e2e.daemons import ROOT

SECRET = "s" * 32
LEADS = """
    INSERT INTO senders (email) VALUES ('s@acme.test');
    INSERT INTO sequences (name, stop_on_company_reply) VALUES ('company', true), ('single', false);
    INSERT INTO sequence_steps (sequence_id, position, subject, body_text)
    VALUES (1, 1, 's', 'b'), (2, 1, 's', 'b');
    INSERT INTO leads (sequence_id, sender_id, email) VALUES
        (1, 1, 'bob@corp.test'), (1, 1, 'ann@corp.test'), (1, 1, 'eve@other.test'),
        (2, 1, 'joe@corp.test'), (2, 1, 'bob@corp.test');
    UPDATE leads SET status = 'completed' WHERE id = 5;
"""


async def _states(pool: asyncpg.Pool) -> dict[int, tuple[str, str | None]]:
    rows = await pool.fetch("""
        SELECT l.id, l.status,
               (SELECT data->>'reason' FROM events e WHERE e.lead_id = l.id AND e.type = 'stopped'
                ORDER BY e.id DESC LIMIT 1) AS reason
        FROM leads l ORDER BY l.id""")
    return {r["id"]: (r["status"], r["reason"]) for r in rows}


async def test_company_reply_stops_the_domain_in_that_sequence_only(pool: asyncpg.Pool) -> None:
    await pool.execute(LEADS)
    assert await pool.fetchval("SELECT record_reply('BOB@corp.test')") == 2
    assert await _states(pool) == {
        1: ("stopped", "replied"),
        2: ("stopped", "company_replied"),  # same domain, sequence stops on company reply
        3: ("active", None),  # other domain
        4: ("active", None),  # same domain, but its sequence does not stop the company
        5: ("completed", None),  # finished leads stay as they are
    }
    assert await pool.fetchval("SELECT count(*) FROM suppressions") == 0  # a reply is no opt-out


def _unsubscribe(database: str, token: str, secret: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": database, "UNSUBSCRIBE_SECRET": secret}
    return subprocess.run(
        [sys.executable, "-m", "db", "unsubscribe", token],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_unsubscribe_token_is_applied_by_the_cli_and_forgeries_change_nothing(
    pool: asyncpg.Pool, database: str
) -> None:
    await pool.execute(LEADS)
    forged = _unsubscribe(database, make_token("w" * 32, 1), SECRET)
    assert forged.returncode == 1
    assert forged.stderr.strip() == "unsubscribe: unsubscribe token signature does not match"
    garbage = _unsubscribe(database, "not-a-token", SECRET)
    assert garbage.returncode == 1
    assert "malformed" in garbage.stderr
    no_secret = _unsubscribe(database, make_token(SECRET, 1), "short")
    assert no_secret.returncode == 2
    assert "UNSUBSCRIBE_SECRET must be at least 32 bytes" in no_secret.stderr
    assert all(s == "active" for s, _ in list((await _states(pool)).values())[:4])

    done = _unsubscribe(database, make_token(SECRET, 1), SECRET)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "unsubscribed bob@corp.test (lead 1): 1 lead(s) stopped"
    states = await _states(pool)
    assert states[1] == ("stopped", "unsubscribed")
    # Unsubscribing is not a reply: the company's other leads go on.
    assert states[2] == ("active", None)
    assert states[4] == ("active", None)
    assert await pool.fetchval("SELECT reason FROM suppressions WHERE email = 'bob@corp.test'") == (
        "unsubscribed"
    )
    # Applying it twice is harmless.
    again = _unsubscribe(database, make_token(SECRET, 1), SECRET)
    assert again.returncode == 0
    assert "0 lead(s) stopped" in again.stdout
