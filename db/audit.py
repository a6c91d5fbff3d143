"""Who is changing things, for the audit trail (db/functions/audit.sql): a door (the CLI,
the REST API, the console) says who acts through it for the current task, and each
connection it takes from its pool carries that as `app.actor` and `app.door` (set only when
it differs from what the connection carries already: most acquires cost nothing)."""

from __future__ import annotations

import weakref
from contextvars import ContextVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

DOORS = ("cli", "api", "console")
_WHO: ContextVar[tuple[str, str]] = ContextVar("audit_who", default=("", ""))
# Per connection: what it carries (weakly keyed: a closed connection's entry goes with it,
# and a new one never inherits it).
_SET: weakref.WeakKeyDictionary[object, tuple[str, str]] = weakref.WeakKeyDictionary()


def acting(actor: str, door: str) -> None:
    """From here on in this task, changes are `actor`'s, through `door`."""
    if door not in DOORS:
        raise ValueError(f"not a door: {door!r}")
    _WHO.set((actor[:200], door))


async def on_acquire(conn: PoolConnectionProxy[asyncpg.Record]) -> None:
    """The pool's `setup`: the connection carries who acts in this task (or no one)."""
    raw = getattr(conn, "_con", conn)
    want = _WHO.get()
    if _SET.get(raw, ("", "")) == want:
        return
    await conn.execute(
        "SELECT set_config('app.actor', $1, false), set_config('app.door', $2, false)", *want
    )
    _SET[raw] = want
