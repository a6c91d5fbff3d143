"""Which SMTP account each message leaves through: the sender's own (`senders.smtp_url`, its
password decrypted with CREDENTIALS_KEY), else the relay of SMTP_*. One bounded pool of
connections per account (providers allow few sessions at once). Accounts are read again
when one changed (`senders.accounts_changed_at`, looked at every few seconds), so a new
password is used from the next connection, without a restart."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import structlog

from core.accounts import Account, InvalidAccount, parse
from core.backoff import SmtpFailure
from db.queries import query
from runtime.credentials import Box, CredentialsError
from runtime.settings import WorkerSettings
from worker.smtp import SendError, SmtpPool

log = structlog.get_logger()


class Relays:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: WorkerSettings,
        *,
        local_hostname: str | None = None,
        check_every: float = 5.0,
    ) -> None:
        self.db = pool
        self.settings = settings
        self.local_hostname = local_hostname
        self.check_every = check_every
        self.relay = SmtpPool(settings, settings.worker_concurrency, local_hostname=local_hostname)
        key = settings.credentials_key.get_secret_value()
        self.box = Box(key) if key else None
        self._accounts: dict[int, Account | str | None] = {}  # None: the relay; str: why not
        self._pools: dict[Account, SmtpPool] = {}
        self._retired: list[SmtpPool] = []
        self._changed_at: object = None
        self._checked = 0.0
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        self._checked = time.monotonic()
        async with self.db.acquire() as conn:
            changed = await conn.fetchval(query("senders", "accounts_changed"))
        if changed != self._changed_at:
            if self._changed_at is not None or self._accounts:
                log.info("smtp_accounts_changed")
            self._changed_at = changed
            self._accounts.clear()
            self._retired += self._pools.values()
            self._pools = {}

    def _account(self, url: str, sealed: bytes | None) -> Account | str:
        try:
            account = parse(url, "smtp")
            if sealed is None:
                return account
            if self.box is None:
                return "the account's password is stored but CREDENTIALS_KEY is not set"
            return account.with_password(self.box.open(sealed))
        except (InvalidAccount, CredentialsError) as exc:
            return str(exc)

    async def pool_for(self, sender_id: int | None) -> SmtpPool:
        """The pool of the account `sender_id`'s messages leave through; SendError when the
        sender's account cannot be used (its circuit's affair, not the lead's)."""
        if sender_id is None:
            return self.relay
        async with self._lock:
            if time.monotonic() - self._checked >= self.check_every:
                await self._refresh()
            if sender_id not in self._accounts:
                async with self.db.acquire() as conn:
                    rows = await conn.fetch(query("senders", "smtp_accounts"), [sender_id])
                self._accounts[sender_id] = (
                    self._account(rows[0]["smtp_url"], rows[0]["smtp_password"]) if rows else None
                )
            account = self._accounts[sender_id]
        if account is None:
            return self.relay
        if isinstance(account, str):  # the account's fault, not the lead's: its circuit opens
            raise SendError(
                SmtpFailure(None, f"sender {sender_id}'s SMTP account: {account}", stage="connect")
            )
        pool = self._pools.get(account)
        if pool is None:
            pool = self._pools[account] = SmtpPool(
                self.settings,
                self.settings.smtp_account_concurrency,
                local_hostname=self.local_hostname,
                account=account,
            )
        return pool

    async def warm(self, count: int) -> int:
        return await self.relay.warm(count)

    async def close(self) -> None:
        for pool in [self.relay, *self._pools.values(), *self._retired]:
            await pool.close()
