"""Senders: their limits, changed with the waiting leads planned again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core import accounts
from core.providers import Provider
from db import events
from db import guard as db_guard
from db.events import Event
from db.pool import Conn
from db.queries import query
from ops.errors import Invalid, NotFound
from runtime.credentials import Box

# The limits an operator sets, by column; None clears a cap (unlimited).
LIMITS = ("hourly_limit", "daily_limit", "daily_new_limit", "min_gap_seconds", "jitter_seconds")
_NOT_NULL = {"min_gap_seconds", "jitter_seconds"}


class InvalidLimit(ValueError):
    """A limit that is not a whole number in range."""


@dataclass(frozen=True, slots=True)
class Changed:
    sender_id: int
    changes: dict[str, Any]
    replanned: int  # waiting leads due again earlier than they were


def check_limits(changes: dict[str, int | None]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for name, value in changes.items():
        if name not in LIMITS:
            raise InvalidLimit(f"not a sender limit: {name}")
        if value is None:
            if name in _NOT_NULL:
                raise InvalidLimit(f"{name} cannot be cleared; set 0")
        elif not 0 <= value <= 10**9 or (value == 0 and name not in _NOT_NULL):
            floor = 0 if name in _NOT_NULL else 1
            raise InvalidLimit(f"{name} must be a whole number from {floor} to 1000000000")
        out[name] = value
    return out


async def set_limits(
    conn: Conn, email: str, changes: dict[str, int | None], *, actor: str, now: datetime
) -> Changed:
    """Change a sender's limits and plan its waiting leads again, in one transaction."""
    return await _change(conn, email, "set_limits", LIMITS, check_limits(changes), actor, now)


async def _change(  # noqa: PLR0917
    conn: Conn,
    email: str,
    statement: str,
    columns: tuple[str, ...],
    checked: dict[str, Any],
    actor: str,
    now: datetime,
    *extra: object,
) -> Changed:
    """Set the `checked` columns of the sender (each only if given), plan its waiting leads
    again (its pacing may have changed), and log `sender_changed`: one transaction."""
    async with conn.transaction():
        sender_id = await conn.fetchval(query("senders", "lock_by_email"), email)
        if sender_id is None:
            raise NotFound(f"no sender {email!r}")
        args: list[object] = []
        for name in columns:
            args += [name in checked, checked.get(name)]
        await conn.execute(query("senders", statement), sender_id, *args, *extra)
        status: str = await conn.execute(query("leads", "replan_sender"), sender_id, now)
        replanned = int(status.rsplit(" ", 1)[-1])
        await events.insert(
            conn,
            Event(None, None, "sender_changed",
                  {"sender_id": sender_id, "actor": actor, "changes": checked,
                   "replanned": replanned}),
            now,
        )  # fmt: skip
    return Changed(sender_id, checked, replanned)


# The guard's per-sender settings (NULL: the GUARD_* default) and the warm-up, by column.
GUARD = (
    "guard_hard_bounce_rate", "guard_complaint_rate", "guard_block_rate", "guard_min_sample",
    "warmup_start", "warmup_increment", "warmup_started_at", "provider_caps",
)  # fmt: skip
PROVIDERS = tuple(str(p) for p in Provider)

# The smallest guard rate: one in a million (a rate is stored as a 4-byte float, in which
# smaller values such as 5e-324 do not exist).
MIN_RATE = 1e-6
MAX_MIN_SAMPLE = 100_000  # the column's own bound (migration 0013)


def check_guard(changes: dict[str, Any]) -> dict[str, Any]:
    """The guard settings in range (a rate from 0 to 1, a sample from 1, a warm-up start
    from 1 and increment from 0); a warm-up is a start and an increment together."""
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in GUARD:
            raise InvalidLimit(f"not a guard setting: {name}")
        if value is not None:
            if name.endswith("_rate") and not (
                isinstance(value, int | float) and MIN_RATE <= value <= 1
            ):
                raise InvalidLimit(f"{name} must be a fraction from {MIN_RATE} to 1 (0.05 is 5%)")
            if name == "guard_min_sample" and not (
                isinstance(value, int) and 1 <= value <= MAX_MIN_SAMPLE
            ):
                raise InvalidLimit(f"{name} must be a whole number from 1 to {MAX_MIN_SAMPLE}")
            if name == "warmup_start" and not (isinstance(value, int) and 1 <= value <= 10**9):
                raise InvalidLimit(f"{name} must be a whole number from 1 to 1000000000")
            if name == "warmup_increment" and not (isinstance(value, int) and 0 <= value <= 10**9):
                raise InvalidLimit(f"{name} must be a whole number from 0 to 1000000000")
        out[name] = check_provider_caps(value) if name == "provider_caps" else value
    if ("warmup_start" in out) != ("warmup_increment" in out) or (
        "warmup_start" in out and (out["warmup_start"] is None) != (out["warmup_increment"] is None)
    ):
        raise InvalidLimit("a warm-up is a start and an increment together (or none of either)")
    return out


def check_provider_caps(caps: object) -> dict[str, int | None]:
    """Caps per recipient provider: hand-offs in any 24 hours, or None to remove one."""
    if not isinstance(caps, dict):
        raise InvalidLimit('provider_caps maps a provider to a daily cap, e.g. {"google": 200}')
    for provider, cap in caps.items():
        if provider not in PROVIDERS:
            raise InvalidLimit(f"not a provider: {provider!r} (one of {', '.join(PROVIDERS)})")
        if cap is not None and (
            isinstance(cap, bool) or not (isinstance(cap, int) and 1 <= cap <= 10**9)
        ):
            raise InvalidLimit(f"the cap at {provider} must be a whole number from 1 to 1000000000")
    return caps


async def set_guard(
    conn: Conn, email: str, changes: dict[str, Any], *, actor: str, now: datetime
) -> Changed:
    """Change a sender's guard thresholds and warm-up (a warm-up changes its pacing: its
    waiting leads are planned again), logged as `sender_changed`."""
    return await _change(conn, email, "set_guard", GUARD, check_guard(changes), actor, now, now)


async def resume(conn: Conn, email: str, *, actor: str, now: datetime) -> bool:
    """Resume a sender the guard paused (False: it was not paused); its window starts
    anew and its waiting leads are planned again."""
    sender_id = await conn.fetchval("SELECT id FROM senders WHERE lower(email) = lower($1)", email)
    if sender_id is None:
        raise NotFound(f"no sender {email!r}")
    return await db_guard.resume(conn, sender_id, by=actor, now=now)


_KEEP: Any = object()


async def set_accounts(
    conn: Conn,
    email: str,
    *,
    smtp_url: str | None = _KEEP,
    smtp_password: str | None = _KEEP,
    imap_url: str | None = _KEEP,
    imap_password: str | None = _KEEP,
    box: Box | None,
    actor: str,
    now: datetime,
) -> list[str]:
    """Set (or, with None, remove) a sender's SMTP and IMAP accounts; passwords are stored
    encrypted with `box`. Returns the names of what changed (never a password)."""
    given = {"smtp_url": smtp_url, "smtp_password": smtp_password,
             "imap_url": imap_url, "imap_password": imap_password}  # fmt: skip
    changes = {k: v for k, v in given.items() if v is not _KEEP}
    for name, kind in (("smtp_url", "smtp"), ("imap_url", "imap")):
        if (url := changes.get(name)) is not None:
            try:
                changes[name] = accounts.parse(url, kind).url
            except accounts.InvalidAccount as exc:
                raise Invalid(name, str(exc)) from None
    sealed: dict[str, bytes | None] = {}
    for name in ("smtp_password", "imap_password"):
        if (password := changes.get(name)) is not None:
            if box is None:
                raise Invalid(name, "needs CREDENTIALS_KEY to be stored encrypted")
            sealed[name] = box.seal(password)
        elif name in changes:
            sealed[name] = None
    async with conn.transaction():
        sender_id = await conn.fetchval(query("senders", "lock_by_email"), email)
        if sender_id is None:
            raise NotFound(f"no sender {email!r}")
        args: list[object] = [sender_id]
        for name in ("smtp_url", "smtp_password", "imap_url", "imap_password"):
            value = sealed.get(name) if name.endswith("password") else changes.get(name)
            args += [name in changes, value]
        await conn.execute(query("senders", "set_accounts"), *args, now)
        await events.insert(
            conn,
            Event(None, None, "sender_changed",
                  {"sender_id": sender_id, "actor": actor, "accounts": sorted(changes)}),
            now,
        )  # fmt: skip
    return sorted(changes)
