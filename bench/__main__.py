"""`make bench`: every performance figure of the product, each next to its reference measured
in the same run, as one table and one JSON line.

    python -m bench [--leads 66667] [--scale-rows 10000000] [--only e2e,latency,...]

1. ceiling  aiosmtplib with pre-built bytes on 8 reused connections (uvloop) against the
            sink: emails/s and the client's CPU per email (the floor).
2. build    the product's message builder against `EmailMessage` + flatten.
3. e2e      leads x 3 zero-wait steps through scheduler, pump and worker processes into the
            sink; emails/s, CPU per email per daemon, peak RSS over time (memory).
   guard    30,000 leads x 1 step with the reputation guard off, then on: the ratio.
   webhooks 30,000 leads x 1 step without webhooks, then with an endpoint on lead.sent (the
            deliverer running): the ratio; 20,000 deliveries to a local receiver (per s); one
            event every 50 ms to an idle deliverer (event to delivery, p50 and p99).
   partitions 30,000 leads x 1 step with events in one plain table, then by month: the ratio.
   statements 30,000 leads x 1 step against a private PostgreSQL with pg_stat_statements:
            statements per email (round trips and those inside functions), the costliest.
   dkim     30,000 leads x 1 step unsigned, then signed with an RSA-2048 key: the ratio,
            with two worker processes as compose.prod runs them (BENCH_DKIM_WORKERS;
            BENCH_DKIM_ALGORITHM=ed25519); CPU per signature is in `build`.
4. latency  at idle: one due lead inserted, until the SMTP server accepted it; 200 times.
5. emails   POST /api/v1/emails driven by wrk (8 connections, 20 s) while the daemons send
            what it schedules: requests/s, p50/p99 latency; every email sent once.
   rest     PATCH /api/v1/senders/1 with the audit triggers on and off, alternating rounds:
            p50 and p99 of each, and the role check's time per call.
   upload   a 200 MB CSV (nine rows in ten rejected) POSTed to the REST import while a lead
            list and the health check are requested every 20 ms: their p99 during the
            upload, beside their p99 with the API idle.
   inbox    the inbox daemon's watcher on a private Dovecot: 3,000 messages (replies,
            auto-replies, bounces) classified and acted on per second; then 40 replies one
            at a time with IDLE, delivery to lead stopped (p50, p99).
6. import   `python -m ops import` of a 1,000,000-row CSV as a process: validated rows/s and
            peak RSS; the same file again (every row a duplicate).
7. scale    the scheduler's and the pump's cost per row with a large table against a small
            one, in the same database, and the p95 of `ops status`'s read at both; with the
            query plans. Then --scale-events events over 13 months' partitions: the p95 of
            status and of a lead's timeline.

The sink is postfix's `smtp-sink` (`apt-get install postfix`), or aiosmtpd if it is missing.
Set BENCH_PROFILE=<dir> to record py-spy profiles of the daemons during e2e."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import uvloop

from bench.ceiling import build_speed, ceiling
from bench.e2e import dkim_cost, end_to_end, guard_cost, paced, partitions_cost
from bench.inbox import inbox_speed
from bench.latency import latency
from bench.operator import emails_rps, import_speed, upload_under_load
from bench.rest import rest_cost
from bench.scale import scale
from bench.services import free_port, start_sink
from bench.statements import statements
from bench.webhooks import webhook_cost
from runtime import logs
from runtime.settings import LogFormat

# -------------------------------------------------------------------------------------------

GOALS = {
    "e2e_emails_per_s": (">=", 1000),
    "e2e_ratio_to_ceiling": (">=", 0.25),
    "cpu_ratio_to_floor": ("<=", 5),
    "builder_speedup": (">=", 10),
    "scheduler_scale_ratio": ("<=", 1.5),
    "pump_scale_ratio": ("<=", 1.5),
    "latency_p99_ms": ("<", 1000),
    "paced_throughput_ratio": (">=", 0.8),
    "dkim_throughput_ratio": (">=", 0.7),
    "paced_cpu_ratio": ("<=", 1.25),
    "guard_throughput_ratio": (">=", 0.95),
    "partitions_throughput_ratio": (">=", 0.97),
    "timeline_p95_ms_large": ("<", 100),
    "webhooks_throughput_ratio": (">=", 0.9),
    "webhook_deliveries_per_s": (">=", 500),
    "webhook_idle_p99_ms": ("<", 1000),
    "rss_peak_mb_scheduler": ("<", 150),
    "rss_peak_mb_pump": ("<", 150),
    "rss_peak_mb_worker": ("<", 150),
    "import_rows_per_s": (">=", 20_000),
    "import_rss_peak_mb": ("<", 200),
    "status_p95_ms_large": ("<", 100),
    "status_p95_ms_large_with_events": ("<", 100),
    "overview_p95_ms_large": ("<", 300),
    "emails_requests_per_s": (">=", 500),
    "emails_p99_ms": ("<", 50),
    "rest_audit_p99_added_ms": ("<", 2),
    "upload_others_p99_ms": ("<", 200),
    "inbox_classified_per_s": (">=", 200),
    "inbox_reply_to_stop_p99_s": ("<", 5),
    "inbox_dsn_4000_recipients_s": ("<", 1),
    "inbox_nested_1000_deep_s": ("<", 1),
}


def _met(value: float, op: str, goal: float) -> bool:
    return {">=": value >= goal, "<=": value <= goal, "<": value < goal}[op]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=66_667, help="e2e leads (x3 emails)")
    ap.add_argument("--latency-leads", type=int, default=200)
    ap.add_argument("--scale-rows", type=int, default=10_000_000)
    ap.add_argument("--scale-events", type=int, default=50_000_000)
    ap.add_argument("--paced-leads", type=int, default=30_000)
    ap.add_argument("--paced-senders", type=int, default=3_000)
    ap.add_argument("--import-rows", type=int, default=1_000_000)
    ap.add_argument(
        "--only",
        default="ceiling,build,e2e,statements,dkim,guard,partitions,webhooks,paced,latency,emails,rest,"
        "upload,import,inbox,scale",
    )
    args = ap.parse_args()
    only = set(args.only.split(","))
    logs.configure("bench", "WARNING", LogFormat.CONSOLE)  # the in-process scheduler and pump
    log_dir = Path(tempfile.mkdtemp(prefix="es_bench_logs_"))
    port = free_port()
    kind, sink = start_sink(port)
    result: dict[str, Any] = {"sink": kind, "logs": str(log_dir)}
    try:
        await asyncio.sleep(1)
        if "ceiling" in only or "e2e" in only:
            result |= await ceiling(port)
        if "build" in only:
            result |= build_speed()
        if "e2e" in only:
            result |= await end_to_end(port, args.leads, log_dir)
            result["e2e_ratio_to_ceiling"] = (
                result["e2e_emails_per_s"] / result["ceiling_emails_per_s"]
            )
            result["cpu_ratio_to_floor"] = (
                result["cpu_ms_per_email"] / result["client_cpu_ms_per_email"]
            )
        if "dkim" in only:
            algorithm = os.environ.get("BENCH_DKIM_ALGORITHM", "rsa")
            workers = int(os.environ.get("BENCH_DKIM_WORKERS", "2"))
            result |= await dkim_cost(port, args.paced_leads, log_dir, algorithm, workers)
        if "guard" in only:
            result |= await guard_cost(port, args.paced_leads, log_dir)
        if "statements" in only:
            result |= await statements(port, args.paced_leads, log_dir)
        if "statements-webhooks" in only:  # the same with an endpoint on lead.sent
            result |= await statements(port, args.paced_leads, log_dir, webhooks=True)
        if "partitions" in only:
            result |= await partitions_cost(port, args.paced_leads, log_dir)
        if "webhooks" in only:
            result |= await webhook_cost(port, args.paced_leads, log_dir)
        if "paced" in only:
            result |= await paced(port, args.paced_leads, args.paced_senders, log_dir)
        if "latency" in only:
            result |= await latency(port, args.latency_leads, log_dir)
        if "emails" in only:
            result |= await emails_rps(port, log_dir)
    finally:
        sink.terminate()
        sink.wait(10)
    if "rest" in only:
        result |= await rest_cost(log_dir)
    if "upload" in only:
        result |= await upload_under_load(log_dir)
    if "inbox" in only:
        result |= await inbox_speed()
    if "import" in only:
        result |= await import_speed(args.import_rows)
    if "scale" in only:
        result |= await scale(args.scale_rows, args.scale_events)
    print(f"\n{'measure':<34}{'value':>14}  goal")
    for k, v in result.items():
        goal = GOALS.get(k)
        note = ""
        if goal is not None and isinstance(v, int | float):
            note = f"{goal[0]} {goal[1]}  {'met' if _met(v, *goal) else 'NOT met'}"
        shown = f"{v:>14.3f}" if isinstance(v, float) else f"{v!s:>14}"
        print(f"{k:<34}{shown}  {note}")
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    uvloop.run(main())
