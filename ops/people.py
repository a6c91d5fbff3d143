"""A person's erasure on request (`ops person erase`, `DELETE /api/v1/people/{email}`): in
one transaction their live leads stop; their leads lose every personal field and attribute
(the address becomes no one's); their stored replies, pending webhook details, outbox rows
and rejected import lines go; their events keep ids and types only; the address stays
suppressed as its SHA-256 alone, so it is never written to again; an `erased` entry in the
audit log names the hash, not the address. Erasing again finds nothing and changes
nothing but the audit log."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from core.message import InvalidAddress, check_address
from db.pool import Conn
from db.queries import query
from ops.errors import Invalid


@dataclass(frozen=True, slots=True)
class Erased:
    address_sha256: str
    leads: int  # leads that were theirs (0: nothing left to erase)
    stopped: int  # of them, live ones stopped first


def _q(name: str) -> str:
    return query("people", name)


async def erase(conn: Conn, email: str, *, actor: str, door: str, now: datetime) -> Erased:
    try:
        address = check_address(email.strip()).lower()
    except InvalidAddress as exc:
        raise Invalid("email", str(exc)) from None
    if "*" in address:
        raise Invalid("email", "one person's address, not a pattern")
    digest = hashlib.sha256(address.encode()).hexdigest()
    async with conn.transaction():
        ids = [r["id"] for r in await conn.fetch(_q("leads"), address)]
        stopped = await conn.fetchval("SELECT stop_leads($1, 'erased')", address) if ids else 0
        for step in ("deliveries", "outbox"):
            await conn.execute(_q(step), ids)
        for step in ("events", "inbound", "webhooks"):
            await conn.execute(_q(step), address, ids)
        await conn.execute(_q("rejects"), address)
        await conn.execute(_q("answers"), ids, now)
        await conn.execute(_q("suppress"), address)
        await conn.execute(_q("audit"), now, actor, door, f"sha256:{digest}", {"leads": len(ids)})
    return Erased(digest, len(ids), stopped or 0)
