"""Prometheus metrics, named in one place (prometheus-client; `_total` counters, `_seconds`
durations). Each daemon serves its own on `METRICS_PORT` (off when unset); the API serves its
own and the status gauges at `/metrics`.

A counter lives in the process that does the work, so a deployment's rate is the sum over
its replicas; the status gauges describe the whole deployment and are read from the
database by whoever serves them.
"""

from __future__ import annotations

import structlog
from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = structlog.get_logger()

PREFIX = "email_scheduler"
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)

# worker
SENDS = Counter(
    f"{PREFIX}_sends_total",
    "Messages handed to SMTP, by what became of them (the event written) and sender id",
    ["outcome", "sender"],
)
MESSAGES = Counter(
    f"{PREFIX}_messages_total",
    "Queue messages the worker handled, by result (sent, failed, rejected, or why skipped)",
    ["result"],
)
SMTP_SECONDS = Histogram(
    f"{PREFIX}_smtp_seconds",
    "One message's SMTP conversation, from taking a connection to the server's answer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CLAIM_BATCH = Histogram(
    f"{PREFIX}_claim_batch_size", "Messages claimed in one database round", buckets=_BATCH
)
RECORD_BATCH = Histogram(
    f"{PREFIX}_record_batch_size", "Outcomes recorded in one database round", buckets=_BATCH
)

# scheduler
PLANNED = Counter(
    f"{PREFIX}_planned_total",
    "Due leads the scheduler dealt with, by outcome (queued, deferred, failed, ...)",
    ["outcome"],
)
PLAN_BATCH = Histogram(
    f"{PREFIX}_plan_batch_size", "Due leads claimed in one scheduler batch", buckets=_BATCH
)
SCHEDULER_LAG = Gauge(
    f"{PREFIX}_scheduler_lag_seconds",
    "How late the oldest due lead of an active sequence is, as the scheduler last saw it",
)

# pump
PUBLISHED = Counter(f"{PREFIX}_published_total", "Outbox rows published and confirmed")
PUBLISH_BATCH = Histogram(
    f"{PREFIX}_publish_batch_size", "Outbox rows published in one batch", buckets=_BATCH
)
PUMP_BACKLOG = Gauge(
    f"{PREFIX}_pump_backlog", "Unpublished outbox rows, as the pump last counted them"
)
PUMP_OLDEST = Gauge(
    f"{PREFIX}_pump_oldest_unpublished_seconds", "Age of the oldest unpublished outbox row"
)


def serve(port: int | None, host: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from outside
    """Serve this process's metrics on `port` (a thread of prometheus-client's); None: off."""
    if port is None:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as exc:  # taken: the daemon still runs, without its own endpoint
        log.warning("metrics_not_served", port=port, error=str(exc))
        return
    log.info("metrics_served", port=port)
