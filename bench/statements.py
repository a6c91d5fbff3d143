"""What PostgreSQL runs per email: `leads` x 1 step through the three daemons against a
private PostgreSQL with pg_stat_statements (every statement, those inside functions too),
then each statement's calls and time per email, the costliest first. The method for
comparing one change of the send path with the next; its figures are counts, not speed
(the private server runs without fsync)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from bench.e2e import LEADS_ONE_SENDER, MODULES, ONE_STEP, _run
from bench.webhooks import endpoint_sql, start_receiver
from tests.fault.services import PrivatePostgres
from tests.ports import free_port

TOP = 20


def _one_line(sql: str, width: int = 90) -> str:
    text = " ".join(line.split("--")[0].strip() for line in sql.splitlines()).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


async def statements(
    port: int, leads: int, log_dir: Path, *, webhooks: bool = False
) -> dict[str, Any]:
    """`webhooks`: with an endpoint on lead.sent and the deliverer posting to a receiver."""
    pg = PrivatePostgres(
        "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
    ).start()
    try:
        admin = await asyncpg.connect(pg.admin_url)
        try:
            await admin.execute("CREATE EXTENSION pg_stat_statements")

            async def reset() -> None:
                await admin.execute("SELECT pg_stat_statements_reset()")

            setup = ONE_STEP + "INSERT INTO senders (email, name) VALUES ('ana@acme.test', 'Ana');"
            extra: dict[str, Any] = {}
            receiver = None
            if webhooks:
                rport = free_port()
                receiver = start_receiver(rport)
                setup += endpoint_sql(rport)
                extra = {
                    "env_extra": {"WEBHOOK_ALLOW_PRIVATE": "true"},
                    "modules": (*MODULES, "webhooks"),
                }
            try:
                run, _ = await _run(
                    port, setup, LEADS_ONE_SENDER, leads, log_dir / "statements",
                    admin_url=pg.admin_url, before_leads=reset, **extra,
                )  # fmt: skip
            finally:
                if receiver is not None:
                    receiver.terminate()
                    receiver.wait(10)
            rows = await admin.fetch(
                """SELECT query, toplevel, sum(calls)::float8 AS calls,
                          sum(total_exec_time) AS ms, sum(rows)::float8 AS rows
                   FROM pg_stat_statements
                   WHERE query NOT LIKE '%pg_stat_statements%'
                   GROUP BY query, toplevel ORDER BY ms DESC"""
            )
        finally:
            await admin.close()
    finally:
        pg.destroy()
    sent = run.sent
    top = sum(r["calls"] for r in rows if r["toplevel"]) / sent
    nested = sum(r["calls"] for r in rows if not r["toplevel"]) / sent
    print(
        f"--- statements per email, {sent:,} emails (top level: round trips; nested: in functions)"
    )
    print(f"{'calls':>7} {'µs':>7} {'rows':>6}  level   statement")
    for r in rows[:TOP]:
        print(
            f"{r['calls'] / sent:7.3f} {r['ms'] * 1000 / sent:7.1f} {r['rows'] / sent:6.2f}  "
            f"{'top   ' if r['toplevel'] else 'nested'}  {_one_line(r['query'])}"
        )
    return {
        "statements_emails": sent,
        "statements_per_email_toplevel": top,
        "statements_per_email_nested": nested,
        "statements_db_ms_per_email": sum(r["ms"] for r in rows if r["toplevel"]) / sent,
    }
