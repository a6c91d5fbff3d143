"""GET /metrics (behind a token): this process's metrics and the deployment's status gauges
(ops/status.py), refreshed from the shared status read at each scrape. Sequences and senders
are labelled by id; the `_info` series map the ids to names and addresses."""

from __future__ import annotations

from prometheus_client import Gauge, generate_latest

from ops.status import Overview
from runtime.metrics import PREFIX, REGISTRIES

_R = REGISTRIES["api"]

LEADS = Gauge(
    f"{PREFIX}_leads", "Leads by sequence and status", ["sequence_id", "status"], registry=_R
)
LAST_DAY = Gauge(
    f"{PREFIX}_sequence_last_day",
    "Outcomes of a sequence in the last 24 hours (hour buckets)",
    ["sequence_id", "outcome"],
    registry=_R,
)
SEQUENCE_INFO = Gauge(
    f"{PREFIX}_sequence_info", "A sequence's name, by id (always 1)", ["sequence_id", "name"],
    registry=_R,
)  # fmt: skip
SENDER_INFO = Gauge(
    f"{PREFIX}_sender_info", "A sender's address, by id (always 1)", ["sender", "address"],
    registry=_R,
)  # fmt: skip
SENDER_SENT = Gauge(
    f"{PREFIX}_sender_sent",
    "A sender's hand-offs in the last hour and day, against its limits",
    ["sender", "window"],
    registry=_R,
)
SENDER_LIMIT = Gauge(
    f"{PREFIX}_sender_limit",
    "A sender's cap per window (absent: none)",
    ["sender", "window"],
    registry=_R,
)
DUE = Gauge(
    f"{PREFIX}_due_leads", "Due leads of active sequences (counted up to 10,000)", registry=_R
)
LAG = Gauge(
    f"{PREFIX}_lag_seconds",
    "How long the oldest due lead of an active sequence waited",
    registry=_R,
)
QUEUED = Gauge(
    f"{PREFIX}_queued_leads", "Leads in the pipeline (counted up to 10,000)", registry=_R
)
UNPUBLISHED = Gauge(
    f"{PREFIX}_outbox_unpublished", "Unpublished outbox rows (up to 10,000)", registry=_R
)
OUTBOX_AGE = Gauge(
    f"{PREFIX}_outbox_oldest_seconds", "Age of the oldest unpublished outbox row", registry=_R
)
QUEUE = Gauge(f"{PREFIX}_queue_messages", "Ready messages in the send queue", registry=_R)
DEAD = Gauge(f"{PREFIX}_dead_letters", "Messages in the dead-letter queue", registry=_R)
REPLICAS = Gauge(
    f"{PREFIX}_daemon_replicas", "Live daemon replicas by service", ["service"], registry=_R
)

SENDER_PAUSED = Gauge(
    f"{PREFIX}_sender_paused",
    "1 while the reputation guard has the sender paused",
    ["sender"],
    registry=_R,
)
SENDER_BACKOFF = Gauge(
    f"{PREFIX}_sender_provider_backoff",
    "1 while a provider has the sender backing off",
    ["sender", "provider"],
    registry=_R,
)

_LABELLED = (
    LEADS, LAST_DAY, SEQUENCE_INFO, SENDER_INFO, SENDER_SENT, SENDER_LIMIT, REPLICAS,
    SENDER_PAUSED, SENDER_BACKOFF,
)  # fmt: skip


def render(view: Overview) -> bytes:
    """The text exposition, with the status gauges set from `view`."""
    for gauge in _LABELLED:
        gauge.clear()  # a sequence or sender gone since the last scrape is not reported
    for q in view.sequences:
        SEQUENCE_INFO.labels(str(q.id), q.name).set(1)
        for status, n in q.leads.items():
            LEADS.labels(str(q.id), status).set(n)
        for outcome, n in q.last_24h.items():
            LAST_DAY.labels(str(q.id), outcome).set(n)
    for s in view.senders:
        sender = str(s.id)
        SENDER_INFO.labels(sender, s.email).set(1)
        SENDER_SENT.labels(sender, "hour").set(s.sent_last_hour)
        SENDER_SENT.labels(sender, "day").set(s.sent_last_day)
        if s.hourly_limit is not None:
            SENDER_LIMIT.labels(sender, "hour").set(s.hourly_limit)
        if s.daily_limit is not None:
            SENDER_LIMIT.labels(sender, "day").set(s.daily_limit)
        SENDER_PAUSED.labels(sender).set(1 if s.status == "paused" else 0)
        for provider in s.backoffs:
            SENDER_BACKOFF.labels(sender, provider).set(1)
    p = view.pipeline
    DUE.set(p.due)
    LAG.set(p.lag_seconds)
    QUEUED.set(p.queued)
    UNPUBLISHED.set(p.outbox_unpublished)
    OUTBOX_AGE.set(p.outbox_oldest_seconds)
    QUEUE.set(p.queue_messages if p.queue_messages is not None else float("nan"))
    DEAD.set(p.dead_letters if p.dead_letters is not None else float("nan"))
    for service in ("scheduler", "pump", "worker", "inbox", "webhooks", "api"):
        REPLICAS.labels(service).set(sum(r.service == service for r in p.replicas))
    return generate_latest(_R)
