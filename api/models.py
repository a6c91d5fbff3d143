"""What the REST API takes and returns (the OpenAPI schema is made from these)."""

from __future__ import annotations

import enum
import zoneinfo
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.lifecycle import Status
from ops.senders import MAX_MIN_SAMPLE, MIN_RATE
from ops.suppressions import ADDRESS_PATTERN, ENTRY_PATTERN


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Lead(BaseModel):
    id: int
    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    status: Status
    current_step: int
    next_run_at: datetime | None
    sequence_id: int
    sender_id: int | None
    enrolled_at: datetime


class LeadPage(BaseModel):
    items: list[Lead]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class Delivery(BaseModel):
    step: int
    message_id: str
    status: str
    attempts: int
    sent_at: datetime | None
    smtp_code: int | None
    error: str | None


class Event(BaseModel):
    id: int
    step: int | None
    type: str
    at: datetime
    data: dict[str, Any]


class HeldBy(BaseModel):
    """The suppression that holds a lead's address: nothing is sent to it."""

    suppression: str  # the address, or *@domain
    reason: str
    created_at: datetime


class LeadDetail(BaseModel):
    lead: dict[str, Any]
    deliveries: list[Delivery]
    events: list[Event]
    suppression: HeldBy | None = None
    # Its events before this instant went with their months (EVENT_RETENTION_DAYS).
    events_dropped_before: datetime | None = None


class ActionResult(BaseModel):
    lead_id: int
    action: str
    changed: bool
    status_before: str | None


class Address(Strict):
    email: str = Field(
        min_length=3, max_length=254, pattern=ADDRESS_PATTERN, examples=["bob@example.com"]
    )


class Stopped(BaseModel):
    email: str
    stopped: int = Field(description="leads stopped by this call")


class SuppressionIn(Strict):
    email: str = Field(
        min_length=3,
        max_length=254,
        pattern=ENTRY_PATTERN,
        description="an address, or *@domain for a whole domain",
    )
    reason: str = Field(default="manual", min_length=1, max_length=100)


class Suppression(BaseModel):
    email: str
    reason: str
    created_at: datetime


class SuppressionAdded(BaseModel):
    email: str
    added: bool
    stopped: int


class SuppressionPage(BaseModel):
    items: list[Suppression]
    next_cursor: str | None


class Health(BaseModel):
    status: str


class ProblemDetail(BaseModel):
    """RFC 9457 problem details; `errors` names each bad field of an invalid request."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entry for problem answers with these status codes: RFC 9457
    problem details, schema and all, so that generated clients keep `detail` and `errors`."""
    schema = {"$ref": "#/components/schemas/ProblemDetail"}
    return {
        code: {
            "model": ProblemDetail,
            "description": _REASONS.get(code, "Problem"),
            "content": {"application/problem+json": {"schema": schema}},
        }
        for code in codes
    }


_REASONS = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
            409: "Conflict", 413: "Too large", 415: "Unsupported media type",
            422: "Invalid request", 503: "Unavailable"}  # fmt: skip


def _zone(name: str) -> str:
    if name not in _ZONES:
        raise ValueError(f"unknown timezone {name!r} (an IANA name such as Europe/Berlin)")
    return name


_ZONES = frozenset(zoneinfo.available_timezones())
# An IANA time zone, checked against the tz database (a string in the schema: an enum of its
# ~600 names breaks client generators on aliases such as GMT0 and Etc/GMT0).
TimeZone = Annotated[
    str,
    AfterValidator(_zone),
    Field(max_length=64, examples=["Europe/Berlin"], description="an IANA time zone name"),
]
ClockTime = Annotated[
    str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$", examples=["09:00"])
]
# An end of window may also be 24:00, the end of the day.
UntilTime = Annotated[
    str,
    Field(
        pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?|24:00(:00)?)$", examples=["17:00"]
    ),
]
Weekday = Annotated[int, Field(ge=1, le=7)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Seconds = Annotated[int, Field(ge=0, le=10**9)]
Cap = Annotated[int, Field(ge=1, le=10**9)]
Fraction = Annotated[float, Field(ge=MIN_RATE, le=1)]
ProviderName = Literal["google", "microsoft", "yahoo", "apple", "other"]
SenderEmail = Annotated[str, Field(min_length=3, max_length=254, pattern=ADDRESS_PATTERN)]


class SequenceIn(Strict):
    name: Name
    timezone: TimeZone = "UTC"
    send_days: list[Weekday] | None = Field(default=None, min_length=1, max_length=7)
    send_from: ClockTime | None = None
    send_until: UntilTime | None = Field(default=None, description="24:00 for the end of day")
    stop_on_company_reply: bool = False
    senders: list[SenderEmail] | None = Field(default=None, max_length=1000)


class SequenceAction(enum.StrEnum):
    PAUSE = "pause"
    RESUME = "resume"


class SequencePatch(Strict):
    name: Name | None = None
    timezone: TimeZone | None = None
    send_days: list[Weekday] | None = Field(default=None, min_length=1, max_length=7)
    send_from: ClockTime | None = None
    send_until: UntilTime | None = None
    stop_on_company_reply: bool | None = None
    senders: list[SenderEmail] | None = Field(default=None, max_length=1000)


class Sequence(BaseModel):
    id: int
    name: str
    timezone: str
    send_days: list[int] | None
    send_from: str | None
    send_until: str | None
    status: str
    stop_on_company_reply: bool
    created_at: datetime
    sender_ids: list[int]


class SequencePage(BaseModel):
    items: list[Sequence]
    next_cursor: str | None


class StepIn(Strict):
    wait_seconds: Seconds = 0
    subject: str | None = Field(
        default=None, max_length=2000, description="null: a reply in the lead's thread"
    )
    body_text: str = Field(min_length=1, max_length=512 * 1024)
    body_html: str | None = Field(default=None, max_length=512 * 1024)


class Step(BaseModel):
    id: int
    position: int
    wait_seconds: int
    subject: str | None
    body_text: str
    body_html: str | None


class SenderIn(Strict):
    email: SenderEmail
    name: str | None = Field(default=None, max_length=200)
    hourly_limit: Cap | None = None
    daily_limit: Cap | None = None
    daily_new_limit: Cap | None = None
    min_gap_seconds: Seconds = 0
    jitter_seconds: Seconds = 0


class SenderPatch(Strict):
    name: str | None = Field(default=None, max_length=200)
    hourly_limit: Cap | None = None
    daily_limit: Cap | None = None
    daily_new_limit: Cap | None = None
    # Absent: unchanged; these two have no "unlimited" (0 is none).
    min_gap_seconds: Seconds = None  # type: ignore[assignment]
    jitter_seconds: Seconds = None  # type: ignore[assignment]
    # The reputation guard's thresholds for this sender (null: the GUARD_* settings).
    guard_hard_bounce_rate: Fraction | None = None
    guard_complaint_rate: Fraction | None = None
    guard_block_rate: Fraction | None = None
    guard_min_sample: Annotated[int, Field(ge=1, le=MAX_MIN_SAMPLE)] | None = None
    # Warm-up: warmup_start a day on its first day, warmup_increment more each day after,
    # up to daily_limit; both null: no warm-up.
    warmup_start: Cap | None = None
    warmup_increment: Seconds | None = None
    # Hand-offs in any 24 hours to each recipient provider, merged into the sender's caps;
    # a provider given as null loses its cap.
    provider_caps: dict[ProviderName, Cap | None] = Field(
        default=None,  # type: ignore[arg-type]
        description='e.g. {"google": 200, "yahoo": null}',
    )


class Sender(BaseModel):
    id: int
    email: str
    name: str | None
    hourly_limit: int | None
    daily_limit: int | None
    daily_new_limit: int | None
    min_gap_seconds: int
    jitter_seconds: int
    paced: bool
    created_at: datetime
    status: str = Field(description="active, or paused by the reputation guard")
    paused_reason: str | None
    paused_at: datetime | None
    guard_probe_at: datetime | None = Field(description="when a pause for blocks probes")
    guard_hard_bounce_rate: float | None
    guard_complaint_rate: float | None
    guard_block_rate: float | None
    guard_min_sample: int | None
    warmup_start: int | None
    warmup_increment: int | None
    warmup_started_at: datetime | None
    provider_caps: dict[str, int] = Field(description="hand-offs in any 24 hours, per provider")


class SenderPage(BaseModel):
    items: list[Sender]
    next_cursor: str | None


class Created(BaseModel):
    id: int


class SenderChanged(BaseModel):
    id: int
    replanned: int = Field(description="waiting leads planned again under the new limits")


class Rejection(BaseModel):
    line: int
    reason: str


class ImportReport(BaseModel):
    rows: int
    imported: int
    updated: int
    duplicates: int
    rejected: int
    rejections: list[Rejection] = Field(description="the first 100 rejected rows")
    dry_run: bool


class OnDuplicate(enum.StrEnum):
    SKIP = "skip"
    UPDATE = "update"


class LeadIn(BaseModel):
    """A lead to import: these fields, and any other key is an attribute."""

    model_config = ConfigDict(extra="allow")

    email: str = Field(max_length=254)
    first_name: str | None = Field(default=None, max_length=10_000)
    last_name: str | None = Field(default=None, max_length=10_000)
    company: str | None = Field(default=None, max_length=10_000)
    timezone: str | None = Field(default=None, max_length=100)


class EmailIn(Strict):
    to: SenderEmail
    subject: str = Field(min_length=1, max_length=900)
    body_text: str = Field(min_length=1, max_length=512 * 1024)
    body_html: str | None = Field(default=None, max_length=512 * 1024)
    sender: SenderEmail = Field(description="one of the senders' addresses")
    send_at: datetime | None = Field(default=None, description="default: now")
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="the same key again returns the first answer and sends nothing twice",
    )


class EmailScheduled(BaseModel):
    id: int = Field(description="the lead the email is (GET /api/v1/leads/{id})")
    status: str
    send_at: datetime
    idempotency_key: str


WebhookEventType = Literal[
    "lead.sent", "lead.replied", "lead.bounced", "lead.unsubscribed", "lead.complained",
    "lead.completed", "lead.failed", "lead.stopped", "sender.paused",
]  # fmt: skip


class WebhookIn(Strict):
    url: str = Field(max_length=2000, description="https://…; the POSTs go here")
    event_types: list[WebhookEventType] = Field(min_length=1, max_length=20)
    description: str = Field(default="", max_length=500)


class WebhookCreated(BaseModel):
    id: int
    url: str
    event_types: list[str]
    secret: str = Field(description="whsec_…: the signing secret, shown this once")


class Webhook(BaseModel):
    id: int
    url: str
    event_types: list[str]
    description: str
    created_at: datetime
    pending: int
    failed: int
    delivered_total: int
    last_delivered_at: datetime | None


class WebhookPage(BaseModel):
    items: list[Webhook]
    next_cursor: str | None


class WebhookDelivery(BaseModel):
    id: int = Field(description="the webhook-id of every try is msg_<id>")
    endpoint_id: int
    event_id: int | None
    event_type: str
    status: Literal["pending", "failed"]
    attempts: int
    created_at: datetime
    finished_at: datetime | None
    next_attempt_at: datetime
    last_code: int | None
    last_error: str | None


class WebhookDeliveryPage(BaseModel):
    items: list[WebhookDelivery]
    next_cursor: str | None


class Replayed(BaseModel):
    replayed: list[int] = Field(description="the deliveries due again now")


class Queued(BaseModel):
    delivery_id: int


Intent = Literal["interested", "not_interested", "out_of_office", "unsubscribe", "other"]


class Reply(BaseModel):
    id: int
    kind: Literal["reply", "auto_reply"]
    intent: Intent | None
    ooo_until: date | None = Field(description="the return date an absence note gives")
    from_address: str
    subject: str
    body: str = Field(description="the reply's own text, above the quote")
    received_at: datetime
    handled_at: datetime | None
    handled_by: str | None
    lead_id: int | None
    lead_email: str | None
    lead_status: str | None
    sender_id: int | None
    sender_email: str | None
    sequence_id: int | None
    sequence_name: str | None


class ReplyPage(BaseModel):
    items: list[Reply]
    next_cursor: str | None


class ThreadItem(BaseModel):
    what: Literal["step", "answer", "reply"]
    at: datetime
    subject: str | None
    body: str | None
    message_id: str | None


class ReplyThread(BaseModel):
    reply: Reply
    thread: list[ThreadItem] = Field(description="our steps, their replies, our answers")


class AnswerIn(Strict):
    body_text: str = Field(min_length=1, max_length=100_000)


class Answered(BaseModel):
    reply_id: int
    email_id: int = Field(description="the one-off email that carries the answer")
    created: bool = Field(description="false: this text was sent to this reply already")


class Erased(BaseModel):
    address_sha256: str = Field(description="all that is kept of the address (suppressed)")
    leads: int = Field(description="the leads that were the person's (0: nothing left)")
    stopped: int = Field(description="of them, live ones stopped first")


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="a token's name, a console user, or user@host for the CLI")
    door: str = Field(description="cli, api or console")
    action: str = Field(description="insert, update, delete, erased")
    target: str = Field(description="table:id")
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None


RoleName = Literal["viewer", "operator", "admin"]


class TokenIn(Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    role: RoleName = Field(
        default="operator",
        description="viewer (reads), operator (leads, sequences, imports, the inbox) or "
        "admin (also senders, accounts, tokens, webhooks, erasure, the audit trail)",
    )


class TokenCreated(BaseModel):
    name: str
    role: RoleName
    token: str = Field(description="es_…: the bearer token, shown this once")


class Token(BaseModel):
    name: str
    role: RoleName
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenList(BaseModel):
    items: list[Token]
