"""Settings per process family, from the environment (and /run/secrets files when present).

An empty value counts as unset (compose's `${X:-}` writes empty strings). A variable that
looks like one of ours but is not (a typo) is reported with the closest valid name.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from core import dkim, guard
from core.gate import AmbiguousPolicy
from core.render import DEFAULT_MAX_BYTES
from core.roles import Allowed
from core.unsubscribe import MIN_SECRET_BYTES

SECRETS_DIR = Path("/run/secrets")


class LogFormat(enum.StrEnum):
    JSON = "json"
    CONSOLE = "console"


class SmtpTls(enum.StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class CommonSettings(BaseSettings):
    """Settings every daemon reads."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", env_ignore_empty=True)

    database_url: str = Field(description="PostgreSQL DSN")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: LogFormat = LogFormat.JSON
    shutdown_timeout_seconds: float = Field(default=20.0, gt=0)
    summary_interval_seconds: float = Field(default=30.0, gt=0)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    # Encrypts and decrypts the passwords of senders' own accounts (runtime/credentials.py).
    credentials_key: SecretStr = SecretStr("")
    # This process's Prometheus metrics on this port (runtime/metrics.py); unset: not served.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Hand-offs per second for the whole deployment (relays that limit the account); None = off.
    # The scheduler plans against it and the worker enforces it under a row lock.
    global_rate_per_second: float | None = Field(default=None, gt=0)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @field_validator("database_url")
    @classmethod
    def _pg_url(cls, v: str) -> str:
        if not v.startswith(("postgres://", "postgresql://")):
            raise ValueError("must start with postgresql://")
        return v


class DkimKeysSettings(CommonSettings):
    """Where the DKIM keys are (the worker signs with them; the console shows them)."""

    # DKIM keys: <dir>/<domain>/<selector>.pem signs every message from <domain>.
    dkim_keys_dir: Path | None = None

    @field_validator("dkim_keys_dir")
    @classmethod
    def _keys_load(cls, v: Path | None) -> Path | None:
        if v is None:
            return v
        if not v.is_dir():
            raise ValueError(f"{v} is not a directory")
        try:
            dkim.load_keys(v)
        except (OSError, dkim.InvalidKey) as exc:
            raise ValueError(str(exc)) from None
        return v


class GuardSettings(CommonSettings):
    """The reputation guard (docs/architecture.md §11): over each sender's last GUARD_WINDOW
    hand-offs, once GUARD_MIN_SAMPLE of them, a rate above its threshold pauses the sender;
    a pause for blocks probes after GUARD_COOLDOWN_SECONDS (doubling)."""

    guard_enabled: bool = True
    guard_window: int = Field(default=200, ge=10, le=100_000)
    guard_min_sample: int = Field(default=20, ge=1, le=100_000)
    guard_hard_bounce_rate: float = Field(default=0.05, gt=0, le=1)
    guard_complaint_rate: float = Field(default=0.003, gt=0, le=1)
    guard_block_rate: float = Field(default=0.10, gt=0, le=1)
    guard_cooldown_seconds: float = Field(default=1800, ge=1, le=86400)

    def guard(self) -> guard.Policy:
        return guard.Policy(
            limits=guard.Thresholds(
                hard_bounce_rate=self.guard_hard_bounce_rate,
                complaint_rate=self.guard_complaint_rate,
                block_rate=self.guard_block_rate,
                min_sample=self.guard_min_sample,
                window=self.guard_window,
            ),
            first_cooldown=timedelta(seconds=self.guard_cooldown_seconds),
            enabled=self.guard_enabled,
        )


class PreflightSettings(DkimKeysSettings):
    """What `ops sender check` reads beside the database: the relay, the EHLO name, the
    DNS servers (the worker's settings of the same names)."""

    smtp_host: str = "localhost"
    smtp_local_hostname: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,253}$")
    dns_nameservers: str | None = Field(default=None, max_length=1000)


class BrokerSettings(CommonSettings):
    """Settings of the daemons that talk to RabbitMQ."""

    amqp_url: str = Field(description="RabbitMQ URL (a cluster: its nodes, comma-separated)")
    # Prefix of the exchange and queue names, so deployments and test runs share a broker.
    amqp_prefix: str = Field(default="email_scheduler", pattern=r"^[A-Za-z0-9_.:-]{1,100}$")

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url(cls, v: str) -> str:
        # One node, or a cluster's nodes separated by commas.
        nodes = [u.strip() for u in v.split(",")]
        if not all(u.startswith(("amqp://", "amqps://")) for u in nodes):
            raise ValueError("must start with amqp:// or amqps:// (each node, if several)")
        return v


class UnsubscribeSettings(CommonSettings):
    """`python -m db unsubscribe`: applies a one-click token (the scheduler's key)."""

    unsubscribe_secret: SecretStr = SecretStr("")


class SchedulerSettings(GuardSettings):
    scheduler_batch_size: int = Field(default=500, ge=1, le=10_000)
    scheduler_poll_seconds: float = Field(default=5.0, gt=0)
    # After a wake-up, wait this long for more changes so one batch plans them together.
    scheduler_linger_seconds: float = Field(default=0.02, ge=0, le=1)
    # A lead queued longer than this with no unpublished outbox row and no live claim is
    # re-enqueued (its message was lost); the worker refuses the stale copy if it turns up.
    rescue_after_seconds: float = Field(default=900.0, gt=0)
    message_id_domain: str | None = None
    # Keys the Message-IDs (HMAC-SHA256 of lead, step and enrolment), so that no recipient
    # can compute another lead's: what a reply must refer to (docs/architecture.md §7).
    # At least 32 bytes.
    message_id_secret: SecretStr
    unsubscribe_mailto: str | None = None
    unsubscribe_secret: SecretStr = SecretStr("")
    unsubscribe_url: str | None = Field(default=None, max_length=500)
    # A lead is queued when its sender's (and the global) pacing has a slot within this
    # horizon; otherwise it waits for its forecast slot. Keep it below PACING_MAX_WAIT_SECONDS.
    pacing_lookahead_seconds: float = Field(default=1.0, ge=0)
    # The budget of one lead's rendering (all parts of its step): time, and characters out.
    render_timeout_seconds: float = Field(default=1.0, gt=0, le=60)
    render_max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1024, le=16 * 1024 * 1024)

    @field_validator("message_id_secret")
    @classmethod
    def _message_id_key(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -base64 48`)"
            )
        return v

    @field_validator("unsubscribe_url")
    @classmethod
    def _https(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        if not v.startswith(("https://", "http://127.", "http://localhost")):
            raise ValueError("must be an https:// URL (http:// only on this host)")
        secret: SecretStr = info.data.get("unsubscribe_secret", SecretStr(""))
        if len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"needs UNSUBSCRIBE_SECRET of at least {MIN_SECRET_BYTES} bytes to sign its"
                " tokens (e.g. `openssl rand -base64 48`)"
            )
        return v


class WebhookSettings(CommonSettings):
    """The webhooks daemon (webhooks/), and what the API and `ops` check endpoints against."""

    # A failed POST is tried again (5 s, doubling to an hour) for this long, then `failed`.
    webhook_retry_hours: float = Field(default=24, gt=0, le=24 * 30)
    webhook_retry_first_seconds: float = Field(default=5, gt=0, le=3600)
    webhook_retry_max_seconds: float = Field(default=3600, gt=0, le=86400)
    # Endpoints on private, loopback or link-local addresses (and plain http): off, so a
    # webhook cannot be aimed at the deployment's own network.
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=10, gt=0, le=120)
    # POSTs in flight at once per endpoint (per deliverer): a slow endpoint holds its own.
    webhook_endpoint_concurrency: int = Field(default=16, ge=1, le=1000)
    # Deliveries one deliverer claims and holds per endpoint (its POSTs wait their turn);
    # the lease of a claim covers them all timing out.
    webhook_batch_size: int = Field(default=64, ge=1, le=10_000)
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=60)


class ApiSettings(BrokerSettings, PreflightSettings, WebhookSettings):
    """The HTTP service (`python -m api`); the broker for status and dead letters."""

    api_host: str = "0.0.0.0"  # noqa: S104 - a service, reached through compose's ports
    api_port: int = Field(default=8080, ge=1, le=65535)
    # Verifies one-click unsubscribe tokens (the scheduler's key).
    unsubscribe_secret: SecretStr = SecretStr("")
    # The web console at / (docs/architecture.md §9): OpenID Connect sign-in; only
    # CONSOLE_ALLOWED (addresses and @domains, comma-separated) get a session. Without
    # OIDC_ISSUER the console is off (the REST API works as before).
    oidc_issuer: str | None = Field(default=None, max_length=500)
    oidc_client_id: str | None = Field(default=None, max_length=500)
    oidc_client_secret: SecretStr | None = None
    console_allowed: str = Field(default="", max_length=10_000)
    session_secret: SecretStr = SecretStr("")
    # Session cookies go over HTTPS only; false for a console on http://localhost.
    session_cookie_secure: bool = True
    session_max_age_seconds: int = Field(default=12 * 3600, ge=60, le=30 * 86400)
    # The largest request body the API reads (a CSV import is streamed to a spool file as
    # it arrives; 256 MiB takes a 200 MB list) and the largest JSON body (parsed whole).
    api_max_body_bytes: int = Field(default=256 * 2**20, ge=2**16, le=2**34)
    api_max_json_bytes: int = Field(default=16 * 2**20, ge=2**16, le=2**30)

    @field_validator("oidc_issuer")
    @classmethod
    def _issuer(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("https://", "http://127.", "http://localhost")):
            raise ValueError("must be an https:// URL (http only for a provider on this host)")
        return v.rstrip("/") if v else v

    @model_validator(mode="after")
    def _console_complete(self) -> ApiSettings:
        if not self.oidc_issuer:
            return self
        missing = [n for n in ("oidc_client_id", "oidc_client_secret", "console_allowed")
                   if not getattr(self, n)]  # fmt: skip
        if missing:
            raise ValueError(
                "the console (OIDC_ISSUER is set) also needs "
                + ", ".join(n.upper() for n in missing)
            )
        Allowed.parse(self.console_allowed)  # a bad entry or role, named
        if len(self.session_secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the console needs SESSION_SECRET of at least {MIN_SECRET_BYTES} bytes to sign"
                " its sessions (e.g. `openssl rand -base64 48`)"
            )
        return self

    @property
    def console_on(self) -> bool:
        return bool(self.oidc_issuer)


class PumpSettings(BrokerSettings):
    pump_batch_size: int = Field(default=500, ge=1, le=10_000)
    pump_poll_seconds: float = Field(default=5.0, gt=0)
    # After a wake-up, wait this long for more rows so one batch publishes them together.
    pump_linger_seconds: float = Field(default=0.01, ge=0, le=1)
    # Publishes in flight at once: each channel has one (aio-pika publishes one at a time
    # per channel), and what all of them write in one event-loop turn leaves in one call.
    pump_channels: int = Field(default=8, ge=1, le=64)
    outbox_retention_hours: float = Field(default=24.0, ge=0)
    outbox_prune_batch: int = Field(default=5_000, ge=1)
    # Events are kept by month (migration 0022): a month whose every event is older than
    # this goes whole.
    event_retention_days: float = Field(default=400.0, ge=1)


class WorkerSettings(BrokerSettings, DkimKeysSettings, GuardSettings):
    # Recipient providers (core/providers.py): the DNS servers their MX hosts are asked of
    # ("127.0.0.1:5353,…"; unset: the host's resolver), and the first backoff of a sender at
    # a provider that said "try later / rate limited" (doubling to an hour).
    dns_nameservers: str | None = Field(default=None, max_length=1000)
    provider_backoff_seconds: float = Field(default=60, ge=0.1, le=3600)
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # AUTH over an unencrypted connection to another host sends the password in clear;
    # refused unless this is set (a relay on a private network you trust).
    smtp_allow_plaintext_auth: bool = False
    smtp_tls: SmtpTls = SmtpTls.NONE
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    # The EHLO name: a fully qualified name of this host that resolves back to its address.
    smtp_local_hostname: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,253}$")
    # An account's open circuit waits this long before its first probe (doubling to 10 min).
    smtp_circuit_seconds: float = Field(default=30.0, gt=0, le=600)
    # Connections at once to one sender's own SMTP account (providers allow few sessions).
    smtp_account_concurrency: int = Field(default=3, ge=1, le=100)
    # The List-Id of a sequence's messages is <sequence-ID.DOMAIN>; default: the From domain.
    list_id_domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")

    worker_concurrency: int = Field(default=16, ge=1, le=1000)
    # Messages that arrive together are claimed, and recorded, in one transaction each.
    worker_batch_size: int = Field(default=64, ge=1, le=1000)
    send_max_attempts: int = Field(default=5, ge=1)
    retry_base_seconds: float = Field(default=60.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    ambiguous_send_policy: AmbiguousPolicy = AmbiguousPolicy.SKIP
    # A pacing slot this close is waited for in the worker instead of going back to waiting.
    pacing_max_wait_seconds: float = Field(default=2.0, ge=0, le=60)

    @field_validator("smtp_tls")
    @classmethod
    def _no_password_in_clear(cls, v: SmtpTls, info: ValidationInfo) -> SmtpTls:
        host = str(info.data.get("smtp_host", ""))
        if (
            v is SmtpTls.NONE
            and info.data.get("smtp_username")
            and not info.data.get("smtp_allow_plaintext_auth")
            and not _is_loopback(host)
        ):
            raise ValueError(
                f"is none, so SMTP_USERNAME's password would cross the network to {host} in"
                " clear: set SMTP_TLS=starttls or tls (or SMTP_ALLOW_PLAINTEXT_AUTH=true)"
            )
        return v

    # Messages a worker holds at once (unacked); 0: four per SMTP connection.
    worker_prefetch: int = Field(default=0, ge=0, le=10_000)

    @property
    def prefetch(self) -> int:
        """Messages a worker holds at once. While some are with SMTP, the rest are being
        claimed or recorded, in batches, and need no connection: a worker that held only
        as many messages as it has connections would leave them idle between batches."""
        return self.worker_prefetch or 4 * self.worker_concurrency


class InboxSettings(GuardSettings):
    """The inbox daemon (`python -m inbox`)."""

    # Mailboxes without IDLE (or with INBOX_IDLE=false) are looked at this often.
    inbox_poll_seconds: float = Field(default=30.0, gt=0)
    inbox_idle: bool = True
    # An IDLE is renewed this often (RFC 2177: servers may end one after 30 minutes).
    inbox_idle_seconds: float = Field(default=300.0, gt=0, le=1740)
    # Senders' inboxes are listed again this often (new, changed or removed accounts).
    inbox_refresh_seconds: float = Field(default=30.0, gt=0)
    inbox_timeout_seconds: float = Field(default=30.0, gt=0)
    # A mailbox that takes bounces for every sender (a Return-Path / bounce address).
    bounce_imap_url: str | None = None
    bounce_imap_password: SecretStr | None = None
    # Reading one message (in a child process): past this it is recorded unreadable.
    inbound_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    # A report acts only on addresses we sent to within this many days
    # (docs/architecture.md §7).
    inbound_match_days: float = Field(default=30, gt=0, le=3650)
    # This many soft bounces of one address within SOFT_BOUNCE_DAYS suppress it.
    soft_bounce_limit: int = Field(default=3, ge=1, le=1000)
    soft_bounce_days: float = Field(default=7, gt=0, le=365)
    # An out-of-office reply with no readable return date defers its lead this many days.
    ooo_default_days: float = Field(default=7, gt=0, le=365)


class HealthSettings(BaseSettings):
    """Where heartbeats are written and how old the last progress may be."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", env_ignore_empty=True)

    health_dir: Path = Path("/tmp/email-scheduler")  # noqa: S108 - one directory per host
    health_max_age_seconds: float = Field(default=60.0, gt=0)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


S = TypeVar("S", bound=BaseSettings)

# Variables starting with one of these are ours; one we do not know is most likely a typo.
PREFIXES = (
    "AMBIGUOUS_",
    "API_",
    "AMQP_",
    "CREDENTIALS_",
    "DATABASE_",
    "DKIM_",
    "DB_",
    "GLOBAL_RATE",
    "HEALTH_",
    "INBOX_",
    "BOUNCE_",
    "LIST_",
    "LOG_",
    "MESSAGE_ID",
    "METRICS_",
    "OUTBOX_",
    "PACING_",
    "PUMP_",
    "RENDER_",
    "RESCUE_",
    "RETRY_",
    "SCHEDULER_",
    "SEND_",
    "SHUTDOWN_",
    "SMTP_",
    "SUMMARY_",
    "UNSUBSCRIBE_",
    "WORKER_",
)


def known_variables() -> set[str]:
    """Every variable some process of this project reads."""
    names: set[str] = set()
    todo: list[type[BaseSettings]] = [CommonSettings, HealthSettings]
    while todo:
        cls = todo.pop()
        names.update(f.upper() for f in cls.model_fields)
        todo.extend(cls.__subclasses__())
    return names


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """(variable, closest valid name) for each variable with our prefix that nothing reads."""
    known = known_variables()
    found = []
    for name in sorted(environ):
        upper = name.upper()
        if upper in known or not upper.startswith(PREFIXES):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        found.append((name, close[0] if close else None))
    return found


def load(cls: type[S]) -> S:
    """Build settings, reading secret files from /run/secrets when that directory exists."""
    kwargs: dict[str, Any] = {}
    if SECRETS_DIR.is_dir():
        kwargs["_secrets_dir"] = SECRETS_DIR
    return cls(**kwargs)


def describe(error: ValidationError) -> str:
    """One line naming every bad variable and what is wrong with it."""
    parts = []
    for e in error.errors():
        name = "_".join(str(p) for p in e["loc"]).upper() or "SETTINGS"
        msg = "is required" if e["type"] == "missing" else e["msg"].removeprefix("Value error, ")
        parts.append(f"{name} {msg}")
    return "invalid settings: " + "; ".join(parts)


def load_or_exit(cls: type[S]) -> S:
    """Build settings or print one clear line to stderr and exit with status 2."""
    try:
        return load(cls)
    except ValidationError as exc:
        print(describe(exc), file=sys.stderr)
        raise SystemExit(2) from None
