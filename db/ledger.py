"""The sender ledger: paced senders' hand-offs to SMTP, booked under row locks.

`lock` takes the row locks of the paced senders a batch sends for and reads what their
limits count; core.pacing decides each slot; `record` writes the bookings in one statement.
The global rate row works the same way. Lock order everywhere: leads, then senders (by
id), then the global row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from core.pacing import Pacing
from db.pool import Conn
from db.queries import query


def _q(name: str) -> str:
    return query("ledger", name)


@dataclass(slots=True)
class Sender:
    """A paced sender's rules and recent hand-offs, as locked for one batch."""

    id: int
    rules: Pacing
    sends: list[datetime]
    first_touches: list[datetime]
    gap_until: datetime | None
    # Per recipient provider with a cap: the cap and that provider's hand-offs of the day.
    provider_caps: dict[str, int] = field(default_factory=dict)
    provider_sends: dict[str, list[datetime]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Booking:
    sender_id: int
    at: datetime
    first_touch: bool
    provider: str | None = None


async def lock(conn: Conn, sender_ids: Sequence[int], now: datetime) -> dict[int, Sender]:
    """Lock the paced senders among `sender_ids`; the unpaced ones are left out."""
    rows = await conn.fetch(_q("lock_senders"), sorted(set(sender_ids)), now)
    return {
        r["id"]: Sender(
            id=r["id"],
            rules=Pacing.from_mapping(r, now),
            sends=list(r["sends"]),
            first_touches=list(r["first_touches"]),
            gap_until=r["next_send_at"],
            provider_caps=r["provider_caps"],
            provider_sends=_by_provider(r["provider_caps"], r["sends"], r["providers"]),
        )
        for r in rows
    }


def _by_provider(
    caps: dict[str, int], sends: Sequence[datetime], providers: Sequence[str | None] | None
) -> dict[str, list[datetime]]:
    """The hand-offs to each capped provider, ascending (`sends` and `providers` align)."""
    out: dict[str, list[datetime]] = {p: [] for p in caps}
    for at, provider in zip(sends, providers or (), strict=False):
        if provider in out:
            out[provider].append(at)
    return out


async def record(conn: Conn, bookings: Sequence[Booking], gaps: dict[int, datetime | None]) -> None:
    """Write booked hand-offs and each sender's gap after its last one."""
    if not bookings:
        return
    await conn.execute(
        _q("record_sends"),
        [b.sender_id for b in bookings],
        [b.at for b in bookings],
        [b.first_touch for b in bookings],
        list(gaps),
        list(gaps.values()),
        [b.provider for b in bookings],
    )


async def lock_global(conn: Conn) -> datetime | None:
    """Lock the deployment's rate row; its next free slot (None: never booked)."""
    value: datetime | None = await conn.fetchval(_q("lock_global"))
    return value


async def set_global(conn: Conn, next_at: datetime) -> None:
    await conn.execute(_q("set_global"), next_at)


async def prune(conn: Conn, now: datetime) -> None:
    """Forget hand-offs no limit looks back on any more."""
    await conn.execute(_q("prune"), now)
