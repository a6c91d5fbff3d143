"""The operator surface under load: a 1,000,000-row CSV import (`python -m ops import` as a
process: rows per second, peak RSS), POST /api/v1/emails driven by wrk while the daemons
send what it schedules (requests per second, latency percentiles), and a 200 MB CSV
uploaded to the REST import while other requests go on (their p99)."""

from __future__ import annotations

import asyncio
import csv
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from bench.services import (
    ROOT,
    SEQUENCE_SQL,
    check_alive,
    daemon_env,
    database,
    drop_topology,
    free_port,
    spawn_daemon,
    stop_daemons,
)
from core.roles import Role
from ops import tokens


def _write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["email", "first_name", "last_name", "company", "timezone", "plan", "seats"])
        for i in range(rows):
            w.writerow(
                [f"lead{i}@example{i % 97}.test", f"First{i}", "Last", f"Co {i % 1000}",
                 "Europe/Berlin" if i % 3 else "", "pro", i % 50]
            )  # fmt: skip


def _run_import(dsn: str, path: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, the report line) of one `ops import` process."""
    env = {**os.environ, "DATABASE_URL": dsn}
    cmd = [sys.executable, "-m", "ops", "import", str(path), "--sequence", "Bench"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"ops import failed: {err[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, out.strip()


async def import_speed(rows: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="es_bench_import_") as tmp:
        path = Path(tmp) / "leads.csv"
        _write_csv(path, rows)
        async with database("es_bench_import") as dsn:
            conn = await asyncpg.connect(dsn)
            await conn.execute(SEQUENCE_SQL)
            await conn.close()
            first, rss, line = _run_import(dsn, path)
            again, rss_again, line_again = _run_import(dsn, path)  # every row a duplicate
    print(f"import: {line} in {first:.1f} s; again: {line_again} in {again:.1f} s")
    return {
        "import_rows": rows,
        "import_rows_per_s": rows / first,
        "import_rss_peak_mb": max(rss, rss_again),
        "import_again_rows_per_s": rows / again,
    }


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(token)s"
local n = 0
request = function()
  n = n + 1
  local body = '{"to": "r' .. n .. '@example.test", "subject": "Invoice ' .. n ..
      '", "body_text": "Hello", "sender": "ana@acme.test"}'
  return wrk.format(nil, "/api/v1/emails", nil, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%f %%f %%f %%f\\n", summary.requests,
      summary.errors.status, summary.errors.connect + summary.errors.read +
      summary.errors.write + summary.errors.timeout, summary.duration / 1e6,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""


async def emails_rps(port: int, log_dir: Path, seconds: int = 20) -> dict[str, Any]:
    """wrk against POST /api/v1/emails with the daemons sending what it schedules."""
    if shutil.which("wrk") is None:
        print("wrk not found (Debian's package `wrk`): POST /emails not measured")
        return {}
    async with database("es_bench_api") as dsn:
        conn = await asyncpg.connect(dsn)
        await conn.execute("INSERT INTO senders (email, name) VALUES ('ana@acme.test', 'Ana')")
        token = await tokens.create(conn, "bench", Role.ADMIN)
        prefix = f"es_bench_{uuid.uuid4().hex[:8]}"
        api_port = free_port()
        env = daemon_env(dsn, port, prefix, API_HOST="127.0.0.1", API_PORT=str(api_port))
        procs = {m: spawn_daemon(env, m, log_dir) for m in ("scheduler", "pump", "worker", "api")}
        try:
            await asyncio.sleep(3)
            check_alive(procs, log_dir)
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
                script.write(_WRK_SCRIPT % {"token": token})
            cmd = ["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", "-s", script.name,
                   f"http://127.0.0.1:{api_port}"]  # fmt: skip
            out = await asyncio.to_thread(
                subprocess.run, cmd, capture_output=True, text=True, check=True
            )
            os.unlink(script.name)
            m = re.search(
                r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+)", out.stdout
            )
            if m is None:
                raise RuntimeError(f"wrk said: {out.stdout}{out.stderr}")
            requests, bad, broken = int(m[1]), int(m[2]), int(m[3])
            duration, p50, p99, worst = (float(m[i]) for i in range(4, 8))
            # The daemons keep sending what was scheduled (with the requests that were still
            # under way when wrk stopped counting): wait, bounded, for all of it.
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM leads WHERE status <> 'completed')"
            ):
                check_alive(procs, log_dir)
                await asyncio.sleep(0.5)
            sent = await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'sent'")
            scheduled = await conn.fetchval("SELECT count(*) FROM leads")
        finally:
            stop_daemons(procs)
            await conn.close()
            await drop_topology(prefix)
    print(f"POST /emails: {requests} requests, {bad} non-2xx, {broken} socket errors;"
          f" {scheduled} scheduled, {sent} sent")  # fmt: skip
    return {
        "emails_requests_per_s": requests / duration,
        "emails_p50_ms": p50,
        "emails_p99_ms": p99,
        "emails_max_ms": worst,
        "emails_non_2xx": bad + broken,
        "emails_all_sent": sent == scheduled >= requests,
    }


def _write_upload(path: Path, megabytes: int) -> int:
    """A CSV of `megabytes` MB where nine rows in ten are rejected (no address): the work of
    checking every row, a tenth of them stored. Returns its rows."""
    line = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        f.write("email,first_name,company\n")
        while f.tell() < megabytes * 10**6:
            for i in range(line, line + 10_000):
                good = i % 10 == 0
                f.write(f"{f'up{i}@example.test' if good else f'nobody-{i}'},Name{i},"
                        f"Company {i % 977} with a longer name to fill the row out\n")  # fmt: skip
            line += 10_000
    return line


def _upload(base: str, token: str, path: Path) -> tuple[int, float]:
    """POST the file to the import route, streamed from disk; (status, seconds)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    t0 = time.perf_counter()
    with path.open("rb") as f:
        conn.request(
            "POST", "/api/v1/sequences/1/leads", body=f,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv",
                     "Content-Length": str(path.stat().st_size)},
        )  # fmt: skip
        resp = conn.getresponse()
        resp.read()
    conn.close()
    return resp.status, time.perf_counter() - t0


def _latencies(base: str, token: str, stop: Callable[[], bool]) -> list[float]:
    """Other requests, one after another every 20 ms until `stop()`: a lead list and the
    health check, as a console page and a load balancer make them; each one's seconds."""
    host, port = base.removeprefix("http://").split(":")
    out: list[float] = []
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    paths = ["/api/v1/leads?limit=20", "/healthz"]
    while not stop():
        t0 = time.perf_counter()
        conn.request("GET", paths[len(out) % 2], headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        resp.read()
        out.append(time.perf_counter() - t0)
        time.sleep(0.02)
    conn.close()
    return out


def _p99_ms(values: list[float]) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def upload_under_load(log_dir: Path, megabytes: int = 200) -> dict[str, Any]:
    """A `megabytes` MB CSV import over REST while other requests go on: their p99 with the
    import running, against their p99 with the API idle, in the same run."""
    async with database("es_bench_upload") as dsn:
        conn = await asyncpg.connect(dsn)
        await conn.execute(SEQUENCE_SQL)
        token = await tokens.create(conn, "bench", Role.ADMIN)
        api_port = free_port()
        env = daemon_env(dsn, 1, f"es_bench_{uuid.uuid4().hex[:8]}", API_HOST="127.0.0.1",
                         API_PORT=str(api_port))  # fmt: skip
        procs = {"api": spawn_daemon(env, "api", log_dir)}
        base = f"http://127.0.0.1:{api_port}"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "upload.csv"
            rows = await asyncio.to_thread(_write_upload, path, megabytes)
            try:
                await asyncio.sleep(3)
                check_alive(procs, log_dir)
                until = time.monotonic() + 5
                idle = await asyncio.to_thread(
                    _latencies, base, token, lambda: time.monotonic() > until
                )
                done = False
                others = asyncio.create_task(
                    asyncio.to_thread(_latencies, base, token, lambda: done)
                )
                status, seconds = await asyncio.to_thread(_upload, base, token, path)
                done = True
                busy = await others
                stored = await conn.fetchval("SELECT count(*) FROM leads")
            finally:
                stop_daemons(procs)
                await conn.close()
    print(f"upload: {megabytes} MB, {rows:,} rows, HTTP {status} in {seconds:.1f} s,"
          f" {stored:,} stored; {len(busy)} other requests meanwhile")  # fmt: skip
    return {
        "upload_mb_per_s": megabytes / seconds,
        "upload_rows_stored": stored,
        "upload_others_p99_ms": _p99_ms(busy),
        "upload_others_max_ms": 1000 * max(busy),
        "upload_idle_p99_ms": _p99_ms(idle),
    }
