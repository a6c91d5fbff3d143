"""What the inbox daemon does with a classified message (core/inbound.py), in one transaction
with the mailbox's read position: a message is acted on once. Whatever arrives can be
written by anyone, so a message changes a lead or a suppression only under these rules
(the rest is an `inbound_ignored` or `reply_unmatched` event, with the reason):

- reply: it refers to a Message-ID we sent from this mailbox and comes from the lead's
  address or domain → `record_reply` (or `record_unsubscribe` when the lead itself asks to
  be taken off the list); event `reply_received`;
- automatic reply: the same match → event `auto_replied`, the lead goes on;
- report (DSN, ARF, SES, free-form notice): only about addresses we sent to from this
  mailbox (the bounce inbox: from any sender) within `match_days`, each one mailbox, never
  a pattern. A hard bounce suppresses the address (`bounce`) and fails the lead whose
  Message-ID the report carries (`failed`, reason `bounced`), else stops the address's live
  leads of that sender (`stopped`, `bounced`); a soft bounce is an event `soft_bounced`,
  and `soft_bounce_limit` of them within `soft_bounce_days` suppress the address
  (`soft_bounce_limit`); a complaint suppresses (`complaint`) and stops (`complained`).
- unreadable (core/inbound.py could not read it in its time): `inbound_unreadable`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from core import guard as core_guard
from core import ooo
from core.inbound import Inbound, Kind, Unread
from core.intent import Intent
from core.message import InvalidAddress, check_address
from db import events
from db import guard as db_guard
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


@dataclass(frozen=True, slots=True)
class Rules:
    """What a report must match, and when soft bounces add up to a suppression."""

    match_days: float = 30
    soft_bounce_limit: int = 3
    soft_bounce_days: float = 7
    # The reputation guard: a hard bounce or complaint heard here counts against the sender.
    guard: core_guard.Policy = field(default_factory=core_guard.Policy)
    # An out-of-office reply without a readable return date defers its lead this long.
    ooo_default_days: float = 7


def is_one_mailbox(address: str) -> bool:
    """One plain address: no pattern (`*@…`), no spaces, one @."""
    try:
        check_address(address)
    except InvalidAddress:
        return False
    return "*" not in address


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


async def act(
    conn: Conn,
    got: Inbound | Unread,
    box: Mailbox,
    *,
    uid: int,
    uidvalidity: int,
    now: datetime,
    rules: Rules = Rules(),
) -> list[str]:
    """Act on one message and move the mailbox's position past it, in one transaction; what
    was done, for the log line."""
    async with conn.transaction():
        if isinstance(got, Unread):
            where = {"mailbox": box.key, "uid": uid, "reason": got.reason}
            await events.insert(conn, Event(None, None, "inbound_unreadable", where), now)
            done = [f"unreadable: {got.reason}"]
        else:
            acting = _Acting(conn, got, box, uid, now, rules)
            done = await acting.run()
            await conn.execute(
                query("inbox", "store"), box.key, uidvalidity, uid, box.sender_id,
                acting.lead_id, acting.step, got.kind.value,
                got.intent or None if got.kind in (Kind.REPLY, Kind.AUTO_REPLY) else None,
                acting.until, got.from_address[:254], got.subject[:998], got.message_id,
                acting.in_reply_to, got.body, now,
            )  # fmt: skip
        await advance(conn, box.key, uidvalidity, uid, now)
    return done


class _Acting:
    def __init__(  # noqa: PLR0917
        self, conn: Conn, got: Inbound, box: Mailbox, uid: int, now: datetime, rules: Rules
    ) -> None:
        self.conn, self.got, self.box, self.now, self.rules = conn, got, box, now, rules
        self.where: dict[str, Any] = {
            "mailbox": box.key, "uid": uid, "message_id": got.message_id,
            "from": got.from_address[:254], "subject": got.subject[:200],
        }  # fmt: skip
        self.since = now - timedelta(days=rules.match_days)
        self.done: list[str] = []
        # What the store keeps of it: the lead and step it is about, the message of ours it
        # answers, and an absence's return date.
        self.lead_id: int | None = None
        self.step: int | None = None
        self.in_reply_to: str | None = None
        self.until: date | None = None
        # (lead, step, kind): what the guard hears of the hand-offs this message reports on.
        self.verdicts: list[tuple[int, int, core_guard.Kind]] = []

    async def run(self) -> list[str]:
        kind = self.got.kind
        if kind in (Kind.REPLY, Kind.AUTO_REPLY):
            await self._reply()
        elif kind is Kind.BOUNCE:
            await self._bounce()
        elif kind is Kind.COMPLAINT:
            await self._complaint()
        else:
            await self._ignore(None, None, "notice naming no recipient")
        for paused in await db_guard.amend(self.conn, self.verdicts, self.rules.guard, self.now):
            self.done.append(f"sender {paused.sender_id} paused: {paused.crossing.reason()}")
        return self.done

    async def _event(self, lead_id: int | None, step: int | None, kind: str, **data: Any) -> None:
        await events.insert(self.conn, Event(lead_id, step, kind, {**self.where, **data}), self.now)

    async def _ignore(
        self, lead_id: int | None, step: int | None, reason: str, **data: Any
    ) -> None:
        await self._event(lead_id, step, "inbound_ignored", reason=reason, **data)
        self.done.append(f"ignored: {reason}")

    async def _ours(self, since: datetime) -> Any:
        """The message of ours the inbound one refers to (from this mailbox), if any."""
        if not self.got.refers_to:
            return None
        return await self.conn.fetchrow(
            query("inbox", "sent_by_message_id"), list(self.got.refers_to), self.box.sender_id,
            since,
        )  # fmt: skip

    async def _reply(self) -> None:
        got = self.got
        ours = await self._ours(datetime.min.replace(tzinfo=self.now.tzinfo))
        auto = got.kind is Kind.AUTO_REPLY
        if ours is None:
            why = "refers to no message we sent from this mailbox"
            if auto:
                return await self._ignore(None, None, f"automatic reply that {why}")
            await self._event(None, None, "reply_unmatched", reason=why)
            self.done.append("reply unmatched: no message of ours")
            return None
        lead_id, step, lead_email = ours["lead_id"], ours["current_step"], ours["email"].lower()
        self.lead_id, self.step, self.in_reply_to = lead_id, ours["step"], ours["message_id"]
        sender = got.from_address.lower()
        if sender != lead_email and (not sender or _domain(sender) != _domain(lead_email)):
            why = "from neither the lead's address nor its domain"
            if auto:
                return await self._ignore(lead_id, step, f"automatic reply {why}")
            await self._event(lead_id, step, "reply_unmatched", reason=why)
            self.done.append(f"reply unmatched: {why}")
            return None
        if got.intent == Intent.OUT_OF_OFFICE:
            # Away, not an answer: the lead is not stopped; its next step waits for the
            # writer's return.
            await self._event(lead_id, step, "auto_replied", intent=got.intent)
            await self._defer(lead_id, step)
            return None
        if auto:
            await self._event(lead_id, step, "auto_replied", intent=got.intent)
            self.done.append(f"auto reply for lead {lead_id}")
            return None
        unsubscribe = got.unsubscribe and sender == lead_email
        verb = "record_unsubscribe" if unsubscribe else "record_reply"
        n = await self.conn.fetchval(f"SELECT {verb}($1)", lead_email)
        await self._event(lead_id, step, "reply_received", unsubscribe=unsubscribe)
        self.done.append(
            f"{'unsubscribed' if unsubscribe else 'replied'} {lead_email} ({n} stopped)"
        )
        return None

    async def _defer(self, lead_id: int, step: int) -> None:
        """Move a waiting lead's next step to the day after the return date the message
        gives (or OOO_DEFAULT_DAYS from now); event `rescheduled`."""
        self.until = ooo.return_date(self.got.body, self.now.date())
        back = (
            datetime.combine(self.until + timedelta(days=1), time(), tzinfo=UTC)
            if self.until is not None
            else self.now + timedelta(days=self.rules.ooo_default_days)
        )
        moved = await self.conn.fetchrow(query("inbox", "defer_lead"), lead_id, back, self.now)
        if moved is None:
            self.done.append(f"out of office for lead {lead_id} (nothing waiting to move)")
            return
        await self._event(lead_id, step, "rescheduled", reason="out_of_office",
                          until=self.until.isoformat() if self.until else None,
                          previous=moved["previous"].isoformat(), due=back.isoformat())  # fmt: skip
        self.done.append(f"out of office: lead {lead_id} due {back:%Y-%m-%d}")

    async def _mailed(self, addresses: list[str]) -> tuple[dict[str, Any], list[str], list[str]]:
        """The addresses a report may act on (each with the lead we last wrote to), and those
        it may not: patterns and other non-addresses, and addresses we did not mail."""
        plain = [a for a in dict.fromkeys(a.lower() for a in addresses) if is_one_mailbox(a)]
        not_one = [a for a in dict.fromkeys(addresses) if not is_one_mailbox(a.lower())]
        rows = await self.conn.fetch(
            query("inbox", "mailed"), plain, self.box.sender_id, self.since
        )
        mailed = {r["email"]: r for r in rows}
        return mailed, not_one, [a for a in plain if a not in mailed]

    async def _ignore_rest(self, not_one: list[str], never: list[str]) -> None:
        unread = self.got.unread
        if not_one or never or unread:
            await self._ignore(
                None, None, "report names addresses it may not act on",
                not_one_address=not_one[:10], not_mailed=never[:10],
                not_mailed_count=len(never), not_read_count=unread,
            )  # fmt: skip

    async def _bounce(self) -> None:
        got = self.got
        failures = {f.recipient.lower(): f for f in reversed(got.failures)}
        mailed, not_one, never = await self._mailed(list(failures))
        ours = await self._ours(self.since)
        for address, row in mailed.items():
            failure = failures[address]
            data = {"recipient": address, "status": failure.status, "reason": failure.reason,
                    "diagnostic": failure.diagnostic[:500]}  # fmt: skip
            if failure.hard:
                self.verdicts.append((row["id"], row["sent_step"], core_guard.Kind.HARD_BOUNCE))
                await self._suppress_and_stop(address, row, ours, "bounce", data)
                self.done.append(f"hard bounce {address} ({failure.reason})")
                continue
            await self._event(row["id"], row["current_step"], "soft_bounced", **data)
            self.done.append(f"soft bounce {address} ({failure.reason})")
            since = self.now - timedelta(days=self.rules.soft_bounce_days)
            count = await self.conn.fetchval(query("inbox", "soft_bounces"), address, since)
            if count >= self.rules.soft_bounce_limit:
                data = {**data, "soft_bounces": count}
                await self._suppress_and_stop(address, row, None, "soft_bounce_limit", data)
                self.done.append(f"{count} soft bounces of {address}: suppressed")
        await self._ignore_rest(not_one, never)

    async def _suppress_and_stop(
        self, address: str, row: Any, ours: Any, why: str, data: dict[str, Any]
    ) -> None:
        """A bounce of `address` we may believe: suppressed; the lead whose message came back
        failed, else the address's live leads of this mailbox's sender stopped."""
        await self.conn.execute(query("inbox", "suppress"), address, why)
        if ours is not None and ours["email"].lower() == address:
            failed = await self.conn.fetchrow(
                query("lead_status", "bounce_lead"), ours["lead_id"], self.now
            )
            if failed is not None:
                why_failed = {**data, "reason": "bounced", "bounce": data.get("reason")}
                await self._event(ours["lead_id"], failed["current_step"], "failed", **why_failed)
        await self.conn.execute(
            query("inbox", "stop_sender_leads"), address, self.box.sender_id, "bounced", self.now
        )

    async def _complaint(self) -> None:
        mailed, not_one, never = await self._mailed(list(self.got.complained))
        for address, row in mailed.items():
            self.verdicts.append((row["id"], row["sent_step"], core_guard.Kind.COMPLAINT))
            await self.conn.execute(query("inbox", "suppress"), address, "complaint")
            await self.conn.fetchval("SELECT stop_leads($1, 'complained')", address)
            await self._event(row["id"], row["current_step"], "complained", address=address)
            self.done.append(f"complaint {address}")
        await self._ignore_rest(not_one, never)
