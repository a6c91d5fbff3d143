"""What the console's overview and sequence pages read (`ops/status.py`): the chart of
sends per hour and the forecast of due leads, a sequence's funnel, and one shared read per
interval however many pages ask at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from core.clock import utcnow
from ops import status

SETUP = """
    INSERT INTO senders (email) VALUES ('s@acme.test');
    INSERT INTO sequences (name) VALUES ('One'), ('Paused');
    INSERT INTO sequence_steps (sequence_id, position, subject, body_text)
    VALUES (1, 1, 's', 'b'), (1, 2, NULL, 'c'), (2, 1, 's', 'b');
"""


async def test_the_chart_counts_past_sends_and_forecasts_due_leads(pool: asyncpg.Pool) -> None:
    await pool.execute(SETUP)
    now = utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    # Due: 3 already (first hour), 2 in five hours, 1 in 60 hours (past the chart); and
    # 4 of the paused sequence (never counted).
    await pool.execute(
        """INSERT INTO leads (sequence_id, sender_id, email, next_run_at)
           SELECT seq, 1, 'l' || i || '@x.test', $1::timestamptz + make_interval(hours => h)
           FROM (VALUES (1, 1, -2), (2, 1, 0), (3, 1, 0), (4, 1, 5), (5, 1, 5), (6, 1, 60),
                        (7, 2, 1), (8, 2, 1), (9, 2, 1), (10, 2, 1)) v(i, seq, h)""",
        hour + timedelta(minutes=30),
    )
    await pool.execute("UPDATE sequences SET status = 'paused' WHERE id = 2")
    await pool.execute(
        """INSERT INTO events (lead_id, step, type, at) VALUES
           (1, 1, 'sent', $1), (2, 1, 'sent', $1), (3, 1, 'failed', $1),
           (4, 1, 'sent', $1 - interval '3 hours'), (5, 1, 'sent', $1 - interval '3 days')""",
        now,
    )
    async with pool.acquire() as conn:
        chart = await status.chart(conn, now)
        assert len(chart.past) == len(chart.due) == status.CHART_HOURS
        assert chart.past[-1] == {"sent": 2, "failed": 1, "bounced": 0, "replied": 0}
        assert chart.past[-4]["sent"] == 1
        assert sum(h["sent"] for h in chart.past) == 3  # three days ago is off the chart
        expected = [0] * status.CHART_HOURS
        expected[0], expected[5] = 3, 2
        assert chart.due == expected
        assert not chart.due_capped

        funnel = await status.funnel(conn, 1, [1, 2])
    assert [p for p, _ in funnel] == [1, 2]
    assert funnel[0][1]["sent"] == 4
    assert funnel[0][1]["failed"] == 1
    assert funnel[1][1] == dict.fromkeys(status.OUTCOMES, 0)


async def test_every_page_open_at_once_shares_one_read(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await pool.execute(SETUP)
    calls = {"read": 0, "chart": 0}
    real_read, real_chart = status.read, status.chart

    async def read(*args: object) -> status.Overview:
        calls["read"] += 1
        return await real_read(*args)  # type: ignore[arg-type]

    async def chart(*args: object) -> status.Chart:
        calls["chart"] += 1
        return await real_chart(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(status, "read", read)
    monkeypatch.setattr(status, "chart", chart)
    shared = status.Shared(pool, None, max_age=1.0)
    views = await asyncio.gather(*(shared.get() for _ in range(50)))
    charts = await asyncio.gather(*(shared.chart() for _ in range(50)))
    assert calls == {"read": 1, "chart": 1}
    assert all(v is views[0] for v in views)
    assert all(c is charts[0] for c in charts)
    await asyncio.sleep(2.1)  # a poll interval later: read again, once
    await asyncio.gather(*(shared.get() for _ in range(50)), *(shared.chart() for _ in range(50)))
    assert calls == {"read": 2, "chart": 2}


async def test_the_forecast_holds_a_paced_senders_leads_to_its_caps(pool: asyncpg.Pool) -> None:
    await pool.execute(SETUP)
    await pool.execute(
        "INSERT INTO senders (email, hourly_limit, daily_limit) VALUES ('slow@acme.test', 2, 5)"
    )
    now = utcnow()
    # Seven due now through the paced sender (one hand-off already today), three through
    # the unpaced one.
    await pool.execute(
        """INSERT INTO leads (sequence_id, sender_id, email, next_run_at)
           SELECT 1, CASE WHEN i <= 7 THEN 2 ELSE 1 END, 'l' || i || '@x.test', $1
           FROM generate_series(1, 10) i""",
        now - timedelta(minutes=1),
    )
    await pool.execute("INSERT INTO sender_sends (sender_id, at) VALUES (2, $1)", now)
    async with pool.acquire() as conn:
        chart = await status.chart(conn, now)
    # Hour 0: 3 unpaced + 2 paced; then 2, then the daily cap (5, one used) leaves 0.
    assert chart.due[:4] == [5, 2, 0, 0]
    assert sum(chart.due[24:]) == 3  # the rest the next day (hours 24, 25)
