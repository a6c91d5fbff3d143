"""The audit trail: operator changes (db/functions/audit.sql) and erasures, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from db.pool import Conn

_LIST = """
SELECT id, at, actor, door, action, target, before, after FROM audit_log
WHERE id < $1 AND ($2::text IS NULL OR actor = $2) AND ($3::text IS NULL OR door = $3)
  AND ($4::text IS NULL OR target LIKE $4 || '%') AND ($5::timestamptz IS NULL OR at >= $5)
ORDER BY id DESC LIMIT $6
"""


async def listing(
    conn: Conn,
    *,
    actor: str | None = None,
    door: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    before: int = 2**63 - 1,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Entries newest first; `target` a prefix (`senders:`, `senders:3`)."""
    rows = await conn.fetch(_LIST, before, actor, door, target, since, limit)
    return [dict(r) for r in rows]
