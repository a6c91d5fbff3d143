"""What the inbox daemon does with a classified message (core/inbound.py), in one transaction
with the mailbox's read position: a message is acted on once.

- reply: `record_reply` for the lead's address (event `replied` via its stop), or
  `record_unsubscribe` when it asks to be taken off the list;
- automatic reply: event `auto_replied`, the lead goes on;
- hard bounce: the address suppressed (`bounce`), the lead failed (`bounced`);
- soft bounce: event `soft_bounced`, nothing suppressed;
- complaint: the address suppressed (`complaint`), its leads stopped (`complained`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.inbound import Inbound, Kind
from db import events
from db.events import Event
from db.pool import Conn
from db.queries import query


@dataclass(frozen=True, slots=True)
class Position:
    uidvalidity: int
    last_uid: int


@dataclass(frozen=True, slots=True)
class Mailbox:
    key: str  # 'sender:<id>' or 'bounce'
    sender_id: int | None
    owner: str | None  # the sender's address


async def position(conn: Conn, mailbox: str) -> Position | None:
    row = await conn.fetchrow(query("inbox", "state"), mailbox)
    return Position(row["uidvalidity"], row["last_uid"]) if row else None


async def advance(conn: Conn, mailbox: str, uidvalidity: int, uid: int, now: datetime) -> None:
    await conn.execute(query("inbox", "advance"), mailbox, uidvalidity, uid, now)


async def _lead(conn: Conn, got: Inbound, box: Mailbox, now: datetime) -> Any:
    if got.refers_to:
        row = await conn.fetchrow(query("inbox", "lead_by_message_id"), list(got.refers_to))
        if row is not None:
            return row
    if got.kind in (Kind.REPLY, Kind.AUTO_REPLY) and box.sender_id is not None and got.from_address:
        return await conn.fetchrow(
            query("inbox", "lead_by_pair"), got.from_address, box.sender_id, now
        )
    return None


async def act(
    conn: Conn, got: Inbound, box: Mailbox, *, uid: int, uidvalidity: int, now: datetime
) -> list[str]:
    """Act on one message and move the mailbox's position past it, in one transaction; what
    was done, for the log line."""
    done: list[str] = []
    where = {"mailbox": box.key, "uid": uid, "message_id": got.message_id}
    async with conn.transaction():
        lead = await _lead(conn, got, box, now)
        lead_id = lead["id"] if lead else None
        step = lead["step"] if lead else None
        if got.kind is Kind.REPLY and lead is not None:
            if got.unsubscribe:
                n = await conn.fetchval("SELECT record_unsubscribe($1)", lead["email"])
                done.append(f"unsubscribed {lead['email']} ({n} stopped)")
            else:
                n = await conn.fetchval("SELECT record_reply($1)", lead["email"])
                done.append(f"replied {lead['email']} ({n} stopped)")
            await events.insert(
                conn,
                Event(lead_id, step, "reply_received", {**where, "unsubscribe": got.unsubscribe}),
                now,
            )
        elif got.kind is Kind.AUTO_REPLY and lead is not None:
            await events.insert(conn, Event(lead_id, step, "auto_replied", where), now)
            done.append(f"auto reply for lead {lead_id}")
        elif got.kind is Kind.BOUNCE:
            for failure in got.failures:
                data = {
                    **where,
                    "recipient": failure.recipient,
                    "status": failure.status,
                    "reason": failure.reason,
                    "diagnostic": failure.diagnostic[:500],
                }
                mine = lead if lead and lead["email"].lower() == failure.recipient else None
                target = mine["id"] if mine else None
                if failure.hard:
                    await conn.execute(query("inbox", "suppress"), failure.recipient, "bounce")
                    if mine is not None:
                        failed = await conn.fetchrow(
                            query("lead_status", "bounce_lead"), mine["id"], now
                        )
                        if failed is not None:
                            await events.insert(
                                conn,
                                Event(target, failed["current_step"], "failed",
                                      {**data, "reason": "bounced"}),
                                now,
                            )  # fmt: skip
                    await conn.fetchval("SELECT stop_leads($1, 'bounced')", failure.recipient)
                    done.append(f"hard bounce {failure.recipient} ({failure.reason})")
                else:
                    await events.insert(conn, Event(target, step, "soft_bounced", data), now)
                    done.append(f"soft bounce {failure.recipient} ({failure.reason})")
        elif got.kind is Kind.COMPLAINT:
            for address in got.complained:
                await conn.execute(query("inbox", "suppress"), address, "complaint")
                await conn.fetchval("SELECT stop_leads($1, 'complained')", address)
                await events.insert(
                    conn, Event(lead_id, step, "complained", {**where, "address": address}), now
                )
                done.append(f"complaint {address}")
        await advance(conn, box.key, uidvalidity, uid, now)
    return done
