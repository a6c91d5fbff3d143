"""`ops.leads.listing`: every combination of filters, and the cursor, against the same
filter applied in Python to every lead."""

from __future__ import annotations

import itertools

import asyncpg

from ops import leads


async def test_every_filter_combination_pages_through_what_it_should(pool: asyncpg.Pool) -> None:
    await pool.execute(
        """INSERT INTO sequences (name) VALUES ('A'), ('B');
           INSERT INTO leads (sequence_id, email, status)
           SELECT 1 + i % 2, CASE WHEN i % 5 = 0 THEN 'Same@X.test' ELSE 'l' || i || '@x.test' END,
                  (ARRAY['active', 'paused', 'failed'])[1 + i % 3]
           FROM generate_series(1, 60) i
           ON CONFLICT DO NOTHING"""
    )
    everyone = [dict(r) for r in await pool.fetch("SELECT * FROM leads ORDER BY id")]
    async with pool.acquire() as conn:
        for status, seq, email in itertools.product(
            [None, "failed", "stopped"], [None, 2], [None, "same@x.TEST"]
        ):
            want = [
                r["id"]
                for r in everyone
                if (status is None or r["status"] == status)
                and (seq is None or r["sequence_id"] == seq)
                and (email is None or r["email"].lower() == email.lower())
            ]
            got: list[int] = []
            after = 0
            while page := await leads.listing(
                conn, status=status, sequence_id=seq, email=email, after=after, limit=4
            ):
                got += [r["id"] for r in page]
                after = page[-1]["id"]
            assert got == want, (status, seq, email)
