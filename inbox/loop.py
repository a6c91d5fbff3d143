"""Watching mailboxes: one task per IMAP inbox (each sender's `imap_url`, and the bounce
inbox), each reading what arrived since the last UID it acted on, classifying it
(core/inbound.py) and acting on it (db/inbox.py) with the new position in one transaction.
IDLE where the server offers it, else polling. Messages are read with BODY.PEEK[] (they stay
unread) and never moved or deleted."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import aioimaplib
import asyncpg
import structlog

from core.accounts import Account, InvalidAccount, Tls, parse
from core.clock import utcnow
from core.inbound import Unread
from db import inbox
from db.pool import TRANSIENT_DB_ERRORS
from db.queries import query
from runtime.credentials import Box, CredentialsError
from runtime.daemon import every, wait_first
from runtime.health import Heartbeat
from runtime.settings import InboxSettings

from . import reading

log = structlog.get_logger()

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCHED_UID = re.compile(rb"UID (\d+)")


async def _starttls(client: aioimaplib.IMAP4, host: str, seconds: float) -> None:
    """Upgrade the connection to TLS (RFC 3501 STARTTLS) before anything else is said, the
    server's certificate checked; its capabilities are asked again over TLS. A server that
    does not offer it is refused, not used in clear."""
    protocol = client.protocol
    if "STARTTLS" not in protocol.capabilities:
        raise ImapError(f"{host} does not offer STARTTLS: use imaps:// or another server")
    command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
    reply = await asyncio.wait_for(protocol.execute(command), seconds)
    if reply.result != "OK":
        raise ImapError(f"STARTTLS refused: {_text(reply.lines)}")
    loop = asyncio.get_running_loop()
    protocol.transport = await asyncio.wait_for(
        loop.start_tls(
            protocol.transport, protocol, ssl.create_default_context(), server_hostname=host
        ),
        seconds,
    )
    await asyncio.wait_for(protocol.capability(), seconds)


class ImapError(Exception):
    """The server said no (login, select, fetch)."""


@dataclass(frozen=True, slots=True)
class Source:
    """One mailbox to watch: where it is and whose it is."""

    box: inbox.Mailbox
    account: Account

    @property
    def label(self) -> str:
        return f"{self.box.key} {self.account.url}"


class Watcher:
    def __init__(
        self,
        source: Source,
        pool: asyncpg.Pool,
        settings: InboxSettings,
        clock: Callable[[], datetime] = utcnow,
        renew: float | None = None,
    ) -> None:
        self.source = source
        # An IDLE is renewed this often (and the mailbox read again then).
        self.idle_seconds = min(settings.inbox_idle_seconds, renew or settings.inbox_idle_seconds)
        self.pool = pool
        self.settings = settings
        self.clock = clock
        self.acted = 0
        self.client: aioimaplib.IMAP4 | None = None
        # When the mailbox was last known read up to date (a catch-up, a poll, an IDLE
        # renewal): what the daemon's health asks of every watcher.
        self.read_at: float | None = None
        self.rules = inbox.Rules(
            match_days=settings.inbound_match_days,
            soft_bounce_limit=settings.soft_bounce_limit,
            soft_bounce_days=settings.soft_bounce_days,
            guard=settings.guard(),
            ooo_default_days=settings.ooo_default_days,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until `stop`; an unreachable server or a refused login is retried, slower
        and slower, with one line each time."""
        backoff = 1.0
        while not stop.is_set():
            try:
                await self._session(stop)
                backoff = 1.0
            except (OSError, TimeoutError, ImapError, aioimaplib.Abort) as exc:
                log.warning("inbox_unavailable", mailbox=self.source.label,
                            error=str(exc) or type(exc).__name__, retry_in_s=backoff)  # fmt: skip
            except TRANSIENT_DB_ERRORS as exc:
                log.warning("database_unavailable", error=str(exc), retry_in_s=backoff)
            except Exception as exc:  # a fault of ours: logged, and the mailbox watched again
                error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("inbox_watcher_failed", mailbox=self.source.label, error=error,
                              retry_in_s=backoff)  # fmt: skip
            finally:
                await self._close()
            await wait_first(stop, None, backoff)
            backoff = min(backoff * 2, 300.0)

    async def _connect(self) -> tuple[aioimaplib.IMAP4, int]:
        a, t = self.source.account, self.settings.inbox_timeout_seconds
        client = (
            aioimaplib.IMAP4_SSL(
                a.host, a.port, timeout=t, ssl_context=ssl.create_default_context()
            )
            if a.tls is Tls.TLS
            else aioimaplib.IMAP4(a.host, a.port, timeout=t)
        )
        self.client = client
        await client.wait_hello_from_server()
        if a.tls is Tls.STARTTLS:
            await _starttls(client, a.host, t)
        reply = await client.login(a.username or "", a.password or "")
        if reply.result != "OK":
            raise ImapError(f"login refused: {_text(reply.lines)}")
        reply = await client.select("INBOX")
        if reply.result != "OK":
            raise ImapError(f"SELECT INBOX refused: {_text(reply.lines)}")
        found = next((m for line in reply.lines if (m := _UIDVALIDITY.search(line))), None)
        if found is None:
            raise ImapError("the server gave no UIDVALIDITY")
        return client, int(found.group(1))

    async def _session(self, stop: asyncio.Event) -> None:
        client, uidvalidity = await self._connect()
        idle = self.settings.inbox_idle and client.has_capability("IDLE")
        log.info("inbox_watching", mailbox=self.source.label, idle=idle)
        while not stop.is_set():
            await self.catch_up(client, uidvalidity)
            self.read_at = asyncio.get_running_loop().time()
            if idle:
                await self._idle(client, stop)
            else:
                await wait_first(stop, None, self.settings.inbox_poll_seconds)
                await client.noop()

    async def _idle(self, client: aioimaplib.IMAP4, stop: asyncio.Event) -> None:
        """Wait for the server to say something changed (or for the renewal, or `stop`)."""
        idling = await client.idle_start(timeout=self.idle_seconds)
        push = asyncio.ensure_future(client.wait_server_push())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait(
                [push, stopped, idling], return_when=asyncio.FIRST_COMPLETED,
                timeout=self.idle_seconds,
            )  # fmt: skip
        finally:
            for waiter in (push, stopped):
                waiter.cancel()
            if client.has_pending_idle():
                client.idle_done()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(idling, self.settings.inbox_timeout_seconds)

    async def catch_up(self, client: aioimaplib.IMAP4, uidvalidity: int) -> int:
        """Act on every message after the last one acted on; how many."""
        key = self.source.box.key
        async with self.pool.acquire() as conn:
            pos = await inbox.position(conn, key)
            if pos is None or pos.uidvalidity != uidvalidity:
                # New, or the server renumbered the mailbox: its old UIDs mean nothing now.
                # Start after what is there (mail from before is not ours to act on again).
                last = await _last_uid(client) if pos is not None else 0
                if pos is not None:
                    log.warning("inbox_uidvalidity_changed", mailbox=self.source.label,
                                was=pos.uidvalidity, now=uidvalidity)  # fmt: skip
                await inbox.advance(conn, key, uidvalidity, last, self.clock())
                pos = inbox.Position(uidvalidity, last)
        reply = await client.uid_search(f"UID {pos.last_uid + 1}:*")
        if reply.result != "OK":
            raise ImapError(f"UID SEARCH refused: {_text(reply.lines)}")
        uids = sorted(int(u) for u in reply.lines[0].split() if int(u) > pos.last_uid)
        for uid in uids:
            raw = await self._fetch(client, uid)
            await self._one(raw, uid, uidvalidity)
            self.acted += 1
        return len(uids)

    async def _one(self, raw: bytes, uid: int, uidvalidity: int) -> None:
        """Act on one message. One the database refuses (a value it cannot store, say) is
        logged and passed over, so it cannot hold up the mail behind it."""
        key = self.source.box.key
        got = await reading.read(raw, self.settings.inbound_timeout_seconds)
        try:
            async with self.pool.acquire() as conn:
                done = await inbox.act(
                    conn, got, self.source.box, uid=uid, uidvalidity=uidvalidity,
                    now=self.clock(), rules=self.rules,
                )  # fmt: skip
        except TRANSIENT_DB_ERRORS:
            raise
        except (asyncpg.PostgresError, ValueError) as exc:
            log.error("inbox_message_failed", mailbox=key, uid=uid,  # noqa: TRY400
                      error=f"{type(exc).__name__}: {exc}"[:500])  # fmt: skip
            async with self.pool.acquire() as conn:
                await inbox.advance(conn, key, uidvalidity, uid, self.clock())
            return
        if isinstance(got, Unread):
            log.warning("inbox_message_unreadable", mailbox=key, uid=uid, error=got.reason)
            return
        log.info("inbox_message", mailbox=key, uid=uid, kind=str(got.kind),
                 message_id=got.message_id, done=done)  # fmt: skip

    async def _fetch(self, client: aioimaplib.IMAP4, uid: int) -> bytes:
        reply = await client.uid("fetch", str(uid), "(BODY.PEEK[])")
        if reply.result != "OK":
            raise ImapError(f"UID FETCH {uid} refused: {_text(reply.lines)}")
        for line in reply.lines:
            if isinstance(line, bytearray):
                return bytes(line)
        return b""

    async def _close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.logout(), 5)


async def _last_uid(client: aioimaplib.IMAP4) -> int:
    reply = await client.uid_search("ALL")
    uids = [int(u) for u in reply.lines[0].split()] if reply.result == "OK" else []
    return max(uids, default=0)


def _text(lines: list[bytes]) -> str:
    return " ".join(bytes(x).decode("utf-8", "replace") for x in lines)[:300]


class Inbox:
    """Keeps one watcher per mailbox: senders' inboxes as they are configured now (read
    again every INBOX_REFRESH_SECONDS), and the bounce inbox."""

    def __init__(
        self, pool: asyncpg.Pool, settings: InboxSettings, heartbeat: Heartbeat | None = None
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.heartbeat = heartbeat
        key = settings.credentials_key.get_secret_value()
        self.box = Box(key) if key else None
        self.watchers: dict[Source, tuple[Watcher, asyncio.Task[None], asyncio.Event]] = {}
        self.started: dict[Source, float] = {}
        self.max_age = heartbeat.max_age if heartbeat is not None else 60.0

    async def sources(self) -> list[Source]:
        found: list[Source] = []
        s = self.settings
        if s.bounce_imap_url:
            account = parse(s.bounce_imap_url, "imap")
            password = s.bounce_imap_password.get_secret_value() if s.bounce_imap_password else None
            found.append(
                Source(inbox.Mailbox("bounce", None, None), account.with_password(password))
            )
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(query("inbox", "mailboxes"))
        for r in rows:
            try:
                account = self._account(r["imap_url"], r["imap_password"])
            except (InvalidAccount, CredentialsError) as exc:
                log.error("inbox_not_watched", sender_id=r["id"], error=str(exc))  # noqa: TRY400
                continue
            found.append(Source(inbox.Mailbox(f"sender:{r['id']}", r["id"], r["email"]), account))
        return found

    def _account(self, url: str, sealed: bytes | None) -> Account:
        account = parse(url, "imap")
        if sealed is None:
            return account
        if self.box is None:
            raise CredentialsError("its password is stored but CREDENTIALS_KEY is not set")
        return account.with_password(self.box.open(sealed))

    async def refresh(self) -> None:
        try:
            wanted = set(await self.sources())
        except TRANSIENT_DB_ERRORS as exc:
            log.warning("database_unavailable", error=str(exc))
            return
        for source in [s for s in self.watchers if s not in wanted]:
            _, task, stop = self.watchers.pop(source)
            stop.set()
            await task
        for source, (_, task, _) in list(self.watchers.items()):
            if task.done():  # it should never end by itself: watched again
                error = task.exception() if not task.cancelled() else None
                log.error("inbox_watcher_restarted", mailbox=source.label, error=repr(error))
                del self.watchers[source]
        for source in wanted - set(self.watchers):
            watcher = Watcher(source, self.pool, self.settings, renew=self.max_age / 2)
            stop = asyncio.Event()
            self.watchers[source] = (watcher, asyncio.create_task(watcher.run(stop)), stop)
            self.started[source] = asyncio.get_running_loop().time()
        if self.heartbeat is not None and not self.behind():
            self.heartbeat.beat()

    def behind(self) -> list[str]:
        """The mailboxes not read within the health age (a watcher that cannot log in, a
        server that does not answer): while there are any, the daemon is not healthy."""
        now = asyncio.get_running_loop().time()
        return [
            source.label
            for source, (watcher, _, _) in self.watchers.items()
            if now - (watcher.read_at or self.started.get(source, now)) > self.max_age
        ]

    async def run(self, stop: asyncio.Event) -> None:
        log.info("inbox_started")
        await reading.start()
        await self.refresh()
        try:
            interval = min(self.settings.inbox_refresh_seconds, self.max_age / 3)
            await every(interval, stop, self.refresh)
        finally:
            for _, _, watcher_stop in self.watchers.values():
                watcher_stop.set()
            await asyncio.gather(*(t for _, t, _ in self.watchers.values()), return_exceptions=True)
