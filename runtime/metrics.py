"""Prometheus metrics, named in one place (prometheus-client; `_total` counters, `_seconds`
durations), each in the registry of the process family that updates it: a daemon serves
only its own series (and its process's) on `METRICS_PORT` (off when unset); the API serves
its own and the deployment's status gauges at `/metrics`, behind a token.

A counter lives in the process that does the work, so a deployment's rate is the sum over
its replicas; the status gauges describe the whole deployment and are read from the
database by whoever serves them. One quantity has one name wherever it is exported (the
scheduler's lag and the status lag are both `email_scheduler_lag_seconds`). Senders and
sequences are labelled by id; `email_scheduler_sender_info` and
`email_scheduler_sequence_info` (API only) map ids to addresses and names.
"""

from __future__ import annotations

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

log = structlog.get_logger()

# No `_created` series beside each counter and histogram: a scrape lists each quantity once.
disable_created_metrics()  # type: ignore[no-untyped-call]
PREFIX = "email_scheduler"
SERVICES = ("scheduler", "pump", "worker", "inbox", "webhooks", "api")


def _registry() -> CollectorRegistry:
    r = CollectorRegistry()
    ProcessCollector(registry=r)
    PlatformCollector(registry=r)
    GCCollector(registry=r)
    return r


REGISTRIES = {service: _registry() for service in SERVICES}
_W, _S, _P = REGISTRIES["worker"], REGISTRIES["scheduler"], REGISTRIES["pump"]
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)

# worker
SENDS = Counter(
    f"{PREFIX}_sends_total",
    "Messages handed to SMTP, by what became of them (the event written) and sender id",
    ["outcome", "sender"],
    registry=_W,
)
MESSAGES = Counter(
    f"{PREFIX}_messages_total",
    "Queue messages the worker handled, by result (sent, failed, rejected, or why skipped)",
    ["result"],
    registry=_W,
)
SMTP_SECONDS = Histogram(
    f"{PREFIX}_smtp_seconds",
    "One message's SMTP conversation, from taking a connection to the server's answer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=_W,
)
CLAIM_BATCH = Histogram(
    f"{PREFIX}_claim_batch_size",
    "Messages claimed in one database round",
    buckets=_BATCH,
    registry=_W,
)
RECORD_BATCH = Histogram(
    f"{PREFIX}_record_batch_size",
    "Outcomes recorded in one database round",
    buckets=_BATCH,
    registry=_W,
)

# scheduler
PLANNED = Counter(
    f"{PREFIX}_planned_total",
    "Due leads the scheduler dealt with, by outcome (queued, deferred, failed, ...)",
    ["outcome"],
    registry=_S,
)
PLAN_BATCH = Histogram(
    f"{PREFIX}_plan_batch_size",
    "Due leads claimed in one scheduler batch",
    buckets=_BATCH,
    registry=_S,
)
SCHEDULER_LAG = Gauge(
    f"{PREFIX}_lag_seconds",
    "How late the oldest due lead of an active sequence is, as the scheduler last saw it",
    registry=_S,
)

# pump
PUBLISHED = Counter(f"{PREFIX}_published_total", "Outbox rows published and confirmed", registry=_P)
PUBLISH_BATCH = Histogram(
    f"{PREFIX}_publish_batch_size",
    "Outbox rows published in one batch",
    buckets=_BATCH,
    registry=_P,
)
PUMP_BACKLOG = Gauge(
    f"{PREFIX}_outbox_unpublished",
    "Unpublished outbox rows, as the pump last counted them",
    registry=_P,
)
PUMP_OLDEST = Gauge(
    f"{PREFIX}_outbox_oldest_seconds",
    "Age of the oldest unpublished outbox row",
    registry=_P,
)

# webhooks
_H = REGISTRIES["webhooks"]
WEBHOOK_TRIES = Counter(
    f"{PREFIX}_webhook_tries_total",
    "Webhook POSTs by outcome: delivered, retry (tried again later), failed (given up)",
    ["outcome"],
    registry=_H,
)
WEBHOOK_SECONDS = Histogram(
    f"{PREFIX}_webhook_seconds",
    "From a webhook's event to the POST that delivered it",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600),
    registry=_H,
)
WEBHOOK_PENDING = Gauge(
    f"{PREFIX}_webhook_pending",
    "Webhook deliveries waiting to be delivered, as the deliverer last counted them",
    registry=_H,
)
WEBHOOK_FAILED = Gauge(
    f"{PREFIX}_webhook_failed",
    "Webhook deliveries given up on (replayable), as the deliverer last counted them",
    registry=_H,
)


def serve(
    port: int | None,
    service: str,
    host: str = "0.0.0.0",  # noqa: S104 - scraped from outside
) -> None:
    """Serve `service`'s metrics on `port` (a thread of prometheus-client's); None: off."""
    if port is None:
        return
    try:
        start_http_server(port, addr=host, registry=REGISTRIES[service])
    except OSError as exc:  # taken: the daemon still runs, without its own endpoint
        log.warning("metrics_not_served", port=port, error=str(exc))
        return
    log.info("metrics_served", port=port)
