"""What the scheduler does with one due lead: enqueue its step, wait, stop, fail or complete."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any

from core import message, render
from core.schemas import SendJob
from core.unsubscribe import make_token, unsubscribe_url
from core.windows import InvalidTimezone, window_from_row

# Windows closer to closing than this are skipped: a message must have time to leave.
MIN_WINDOW_LEFT_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class DueLead:
    """A due lead joined with its step, sequence and sender, as the scheduler claims it."""

    id: int
    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    timezone: str | None
    attributes: Any
    current_step: int
    attempt: int
    enrolled_at: datetime
    sequence_id: int
    sequence_timezone: str
    send_days: Sequence[int] | None
    send_from: time | None
    send_until: time | None
    sender_id: int | None
    sender_email: str | None
    sender_name: str | None
    step_position: int | None
    subject: str | None
    body_text: str | None
    body_html: str | None
    suppressed: bool
    sent_steps: int = 0
    thread_subject: str | None = None
    thread_message_ids: Sequence[str] = field(default_factory=tuple)
    # Due later than its step's wait said (deferred by pacing, a window, a retry): it holds
    # a slot of its own, which leads due afresh go around.
    booked: bool = False
    # An operator's answer to a reply (a one-off lead): the Message-IDs it answers
    # (References; the last is In-Reply-To).
    reply_references: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """The scheduler settings the planner needs."""

    message_id_domain: str | None = None
    message_id_key: bytes = b""  # MESSAGE_ID_SECRET
    unsubscribe_mailto: str | None = None
    unsubscribe_url: str | None = None
    unsubscribe_secret: str = ""
    render_max_bytes: int = render.DEFAULT_MAX_BYTES


@dataclass(frozen=True, slots=True)
class Enqueue:
    job: SendJob


@dataclass(frozen=True, slots=True)
class Wait:
    until: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Stop:
    reason: str


@dataclass(frozen=True, slots=True)
class Fail:
    reason: str
    error: str


@dataclass(frozen=True, slots=True)
class Complete:
    pass


Decision = Enqueue | Wait | Stop | Fail | Complete


def plan(lead: DueLead, now: datetime, settings: Settings) -> Decision:
    """Decide what happens to a due lead at `now`. Never raises for bad lead data."""
    if lead.suppressed:
        return Stop("suppressed")
    if lead.step_position is None or lead.body_text is None:
        if lead.sent_steps > 0:
            return Complete()
        return Fail("no_steps", f"sequence {lead.sequence_id} has no step {lead.current_step}")
    if lead.sender_id is None or lead.sender_email is None:
        return Fail("no_sender", f"sequence {lead.sequence_id} has no sender for this lead")
    try:
        message.check_address(lead.email)
    except message.InvalidAddress as exc:
        return Fail("invalid_email", str(exc))
    if not isinstance(lead.attributes, Mapping):
        return Fail("invalid_attributes", "attributes must be a JSON object")
    tz_name = lead.timezone or lead.sequence_timezone
    try:
        window = window_from_row(
            tz_name, list(lead.send_days or ()), lead.send_from, lead.send_until
        )
    except InvalidTimezone as exc:
        return Fail("invalid_timezone", str(exc))

    opens, closes = window.next_open(now)
    if opens > now:
        return Wait(opens, "window")
    if closes is not None and (closes - now).total_seconds() < MIN_WINDOW_LEFT_SECONDS:
        nxt, _ = window.next_open(closes)
        return Wait(nxt, "window")

    try:
        job = _render(lead, settings, closes)
    except (render.TemplateError, message.InvalidAddress, ValueError) as exc:
        return Fail("template_error", str(exc))
    return Enqueue(job)


def reply_subject(first: str) -> str:
    """The subject of a reply in the thread: "Re: " and the first one, shortened to fit."""
    subject = message.one_line(first)
    if not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    if len(subject) > message.MAX_SUBJECT_CHARS:
        subject = subject[: message.MAX_SUBJECT_CHARS - 1].rstrip() + "…"
    return subject


def render_job(lead: DueLead, settings: Settings) -> SendJob:
    """The message `lead`'s step would be (TemplateError when it cannot be rendered): what
    the console's preview shows."""
    return _render(lead, settings, None)


def _render(lead: DueLead, settings: Settings, closes: datetime | None) -> SendJob:
    assert lead.sender_email is not None
    assert lead.sender_id is not None
    assert lead.body_text is not None
    assert lead.step_position is not None
    message.check_address(lead.sender_email)
    domain = settings.message_id_domain or lead.sender_email.rpartition("@")[2]
    unsub_url = None
    if settings.unsubscribe_url:
        token = make_token(settings.unsubscribe_secret, lead.id)
        unsub_url = unsubscribe_url(settings.unsubscribe_url, token)
    limit = settings.render_max_bytes
    ctx = render.lead_context(
        email=lead.email,
        first_name=lead.first_name,
        last_name=lead.last_name,
        company=lead.company,
        attributes=lead.attributes,
        extra={
            "sender_name": lead.sender_name,
            "sender_email": lead.sender_email,
            "step": lead.step_position,
            "unsubscribe_url": unsub_url or "",
        },
    )
    in_reply_to: str | None = None
    references: list[str] = []
    if lead.subject is None:
        if not lead.thread_message_ids or lead.thread_subject is None:
            raise render.TemplateError(
                "subject: empty subject needs an earlier sent step to reply to"
            )
        subject = reply_subject(lead.thread_subject)
        references = list(lead.thread_message_ids)
        in_reply_to = references[-1]
    else:
        subject = message.one_line(
            render.render(lead.subject, ctx, part="subject", max_bytes=limit)
        )
        if len(subject) > message.MAX_SUBJECT_CHARS:
            raise render.TemplateError(
                f"subject: longer than {message.MAX_SUBJECT_CHARS} characters"
            )
    if lead.reply_references:
        references = list(lead.reply_references)[-20:]
        in_reply_to = references[-1]
    text = render.render(lead.body_text, ctx, part="body_text", max_bytes=limit)
    html = None
    if lead.body_html:
        # A template may render no HTML for some leads: then the message is text only.
        html = render.render(lead.body_html, ctx, part="body_html", html=True, max_bytes=limit)
        html = html if html.strip() else None
    if html is not None and len(text) + len(html) > limit:
        raise render.BudgetExceeded(f"body: text and html together larger than {limit} characters")

    unsub_parts = []
    if settings.unsubscribe_mailto:
        unsub_parts.append(f"<mailto:{settings.unsubscribe_mailto}?subject=unsubscribe>")
    if unsub_url:
        unsub_parts.append(f"<{unsub_url}>")
    return SendJob(
        lead_id=lead.id,
        step=lead.step_position,
        attempt=lead.attempt + 1,
        sender_id=lead.sender_id,
        sequence_id=lead.sequence_id,
        from_address=lead.sender_email,
        from_name=lead.sender_name,
        to_address=lead.email,
        subject=subject,
        text=text,
        html=html,
        message_id=message.message_id(
            lead.id,
            lead.step_position,
            lead.enrolled_at.isoformat(),
            domain,
            settings.message_id_key,
        ),
        in_reply_to=in_reply_to,
        references=references,
        list_unsubscribe=", ".join(unsub_parts) or None,
        list_unsubscribe_post=unsub_url is not None,
        first_touch=lead.sent_steps == 0,
        not_after=closes,
    )
