"""Creating and changing sequences, their steps and senders, checked before they are stored:
a timezone the tz database knows, weekdays 1-7, templates that compile, limits in range."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from typing import Any

import asyncpg

from core import render
from core.windows import InvalidTimezone, load_zone
from db.pool import Conn
from db.queries import query
from ops.errors import Conflict, Invalid, NotFound
from ops.senders import LIMITS, InvalidLimit, check_limits
from ops.suppressions import ADDRESS_PATTERN

__all__ = ["Conflict", "Invalid", "NotFound"]  # where callers have always found them


def _q(table: str, name: str) -> str:
    return query(table, name)


def check_timezone(name: str) -> str:
    try:
        load_zone(name)
    except InvalidTimezone as exc:
        raise Invalid("timezone", str(exc)) from None
    return name


def check_days(days: list[int] | None) -> list[int] | None:
    if days is None:
        return None
    if not days or any(d not in range(1, 8) for d in days):
        raise Invalid("send_days", "ISO weekdays 1 (Monday) to 7 (Sunday), at least one")
    return sorted(set(days))


@dataclass(frozen=True, slots=True)
class SequenceSpec:
    name: str
    timezone: str = "UTC"
    send_days: list[int] | None = None
    send_from: time | None = None
    send_until: time | None = None
    stop_on_company_reply: bool = False
    senders: list[str] | None = None  # sender addresses; None: unchanged (or none)


async def _sender_ids(conn: Conn, emails: list[str]) -> list[int]:
    rows = await conn.fetch(
        "SELECT id, lower(email) AS email FROM senders WHERE lower(email) = ANY($1)",
        [e.lower() for e in emails],
    )
    found = {r["email"]: r["id"] for r in rows}
    missing = [e for e in emails if e.lower() not in found]
    if missing:
        raise Invalid("senders", f"no sender {missing[0]!r}")
    return sorted(set(found.values()))


async def _name_free(conn: Conn, name: str, seq_id: int | None = None) -> None:
    """Sequences are named by people (`ops import --sequence NAME`): one name, one sequence.
    Checked under a lock, so two at once cannot both take a name."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sequences.name'))")
    taken = await conn.fetchval(
        "SELECT id FROM sequences WHERE name = $1 AND id IS DISTINCT FROM $2", name, seq_id
    )
    if taken is not None:
        raise Conflict(f"a sequence named {name!r} exists ({taken})")


async def create_sequence(conn: Conn, spec: SequenceSpec) -> int:
    """Store a new sequence (no steps yet) and its senders; its id."""
    check_timezone(spec.timezone)
    days = check_days(spec.send_days)
    async with conn.transaction():
        await _name_free(conn, spec.name)
        seq_id: int = await conn.fetchval(
            _q("sequences", "create"),
            spec.name,
            spec.timezone,
            days,
            spec.send_from,
            spec.send_until,
            spec.stop_on_company_reply,
        )
        if spec.senders:
            await conn.execute(
                _q("sequences", "set_senders"), seq_id, await _sender_ids(conn, spec.senders)
            )
    return seq_id


async def update_sequence(conn: Conn, seq_id: int, changes: dict[str, Any]) -> None:
    """Change the given fields of a sequence (and its senders, if given)."""
    for required in ("name", "timezone", "stop_on_company_reply"):
        if required in changes and changes[required] is None:
            raise Invalid(required, "cannot be null (leave it out to keep it as it is)")
    if "timezone" in changes:
        check_timezone(changes["timezone"])
    if "send_days" in changes:
        changes["send_days"] = check_days(changes["send_days"])
    fields = ("name", "timezone", "send_days", "send_from", "send_until", "stop_on_company_reply")
    args: list[object] = []
    for f in fields:
        args += [f in changes, changes.get(f)]
    async with conn.transaction():
        if changes.get("name") is not None:
            await _name_free(conn, changes["name"], seq_id)
        done: str = await conn.execute(_q("sequences", "update"), seq_id, *args)
        if done == "UPDATE 0":
            raise NotFound(f"no sequence {seq_id}")
        if changes.get("senders") is not None:
            await conn.execute(
                _q("sequences", "set_senders"),
                seq_id,
                await _sender_ids(conn, changes["senders"]),
            )


async def sequences(conn: Conn, *, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(_q("sequences", "list"), after, limit)]


async def sequence(conn: Conn, seq_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(_q("sequences", "get"), seq_id)
    if row is None:
        raise NotFound(f"no sequence {seq_id}")
    return dict(row)


async def steps(conn: Conn, seq_id: int) -> list[dict[str, Any]]:
    await sequence(conn, seq_id)
    return [dict(r) for r in await conn.fetch(_q("sequences", "steps"), seq_id)]


MAX_POSITION = 10_000
MAX_BODY = 512 * 1024


@dataclass(frozen=True, slots=True)
class StepSpec:
    position: int
    body_text: str
    subject: str | None = None  # None: a reply in the lead's thread
    body_html: str | None = None
    wait_seconds: int = 0


async def put_step(conn: Conn, seq_id: int, step: StepSpec) -> int:
    """Create or replace the step at `step.position`; its templates must compile."""
    if not 1 <= step.position <= MAX_POSITION:
        raise Invalid("position", f"a whole number from 1 to {MAX_POSITION}")
    if not 0 <= step.wait_seconds <= 10**9:
        raise Invalid("wait_seconds", "from 0 to 1000000000 seconds")
    if not step.body_text.strip():
        raise Invalid("body_text", "empty")
    for part, value, most in (
        ("subject", step.subject, 2000),
        ("body_text", step.body_text, MAX_BODY),
        ("body_html", step.body_html, MAX_BODY),
    ):
        if value is not None and len(value) > most:
            raise Invalid(part, f"longer than {most} characters")
    for part, source, html in (
        ("subject", step.subject, False),
        ("body_text", step.body_text, False),
        ("body_html", step.body_html, True),
    ):
        if source is not None:
            try:
                render.check(source, part=part, html=html)
            except render.TemplateError as exc:
                raise Invalid(part, str(exc).split(": ", 1)[-1]) from None
    await sequence(conn, seq_id)
    step_id: int = await conn.fetchval(
        _q("sequences", "upsert_step"),
        seq_id,
        step.position,
        step.wait_seconds,
        step.subject,
        step.body_text,
        step.body_html,
    )
    return step_id


async def senders(conn: Conn, *, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(_q("senders", "list"), after, limit)]


async def sender(conn: Conn, sender_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(_q("senders", "get"), sender_id)
    if row is None:
        raise NotFound(f"no sender {sender_id}")
    return dict(row)


async def create_sender(
    conn: Conn, email: str, name: str | None, limits: dict[str, int | None]
) -> int:
    """Store a new sender; its id."""
    if not (3 <= len(email) <= 254 and re.fullmatch(ADDRESS_PATTERN, email)):
        raise Invalid("email", f"not an address: {email[:254]!r}")
    if name is not None and len(name) > 200:
        raise Invalid("name", "at most 200 characters")
    try:
        check_limits({k: v for k, v in limits.items() if v is not None})
    except InvalidLimit as exc:
        raise Invalid("limits", str(exc)) from None
    if await conn.fetchval("SELECT 1 FROM senders WHERE lower(email) = lower($1)", email):
        raise Conflict(f"a sender {email!r} exists")
    values = {k: limits.get(k) for k in LIMITS}
    values["min_gap_seconds"] = values["min_gap_seconds"] or 0
    values["jitter_seconds"] = values["jitter_seconds"] or 0
    try:
        sender_id: int = await conn.fetchval(_q("senders", "create"), email, name, *values.values())
    except asyncpg.UniqueViolationError:
        raise Conflict(f"a sender {email!r} exists") from None
    except asyncpg.CheckViolationError as exc:
        raise Invalid("limits", str(exc)) from None
    return sender_id


async def rename_sender(conn: Conn, sender_id: int, name: str | None) -> None:
    await conn.execute(_q("senders", "rename"), sender_id, name)
