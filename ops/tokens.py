"""API tokens: created once-shown, stored as SHA-256, revocable."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from core.roles import Role
from db.pool import Conn

PREFIX = "es_"


class TokenExists(ValueError):
    """A live token already has that name."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a live token is: its name and role."""

    name: str
    role: Role


async def create(conn: Conn, name: str, role: Role = Role.OPERATOR) -> str:
    """A new bearer token named `name` with `role`; the only time it is shown."""
    if not name or len(name) > 100 or not name.isprintable():
        raise ValueError("a token's name is 1 to 100 printable characters")
    token = PREFIX + secrets.token_urlsafe(32)
    try:
        await conn.execute(
            "INSERT INTO api_tokens (name, token_sha256, role) VALUES ($1, $2, $3)",
            name,
            _digest(token),
            role.value,
        )
    except asyncpg.UniqueViolationError as exc:
        raise TokenExists(f"a live token is named {name!r}: revoke it first") from exc
    return token


async def revoke(conn: Conn, name: str, now: datetime) -> bool:
    """Revoke the live token called `name`; False if there is none."""
    done: str = await conn.execute(
        "UPDATE api_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL", name, now
    )
    return done != "UPDATE 0"


async def authenticate(conn: Conn, token: str, now: datetime) -> Caller | None:
    """Who the live token `token` is, or None."""
    row = await conn.fetchrow(
        """UPDATE api_tokens SET last_used_at = $2
           WHERE token_sha256 = $1 AND revoked_at IS NULL RETURNING name, role""",
        _digest(token),
        now,
    )
    return None if row is None else Caller(row["name"], Role(row["role"]))


async def listing(conn: Conn) -> list[TokenInfo]:
    rows = await conn.fetch(
        "SELECT name, role, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY id"
    )
    return [TokenInfo(**{**dict(r), "role": Role(r["role"])}) for r in rows]
