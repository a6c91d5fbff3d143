"""Operator actions on leads, through the lead lifecycle: each changed lead gets one event
whose type says the action and whose data names the actor (a token, a console user, `cli`)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db import events
from db.events import Event
from db.pool import Conn
from db.queries import query


class Action(enum.StrEnum):
    RETRY = "retry"
    STOP = "stop"
    PAUSE = "pause"
    RESUME = "resume"


# action -> (its lifecycle move's statement, event type); tests/integration/test_lifecycle.py
# drives these statements against core.lifecycle's moves retry, stop, pause and resume.
_ACTIONS = {
    Action.RETRY: ("operator_retry", "retried"),
    Action.STOP: ("operator_stop", "stopped"),
    Action.PAUSE: ("operator_pause", "paused"),
    Action.RESUME: ("operator_resume", "resumed"),
}


@dataclass(frozen=True, slots=True)
class Outcome:
    lead_id: int
    changed: bool  # False: no such lead, or its status does not allow the action
    status_before: str | None
    why: str | None = None  # why it did not change, when it is not its status


async def suppressed(conn: Conn, lead_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The suppression that holds each of these leads' address (none: not suppressed)."""
    found: dict[int, dict[str, Any]] = {}
    for r in await conn.fetch(query("lead_status", "suppressed"), list(lead_ids)):
        found.setdefault(r["id"], {k: r[k] for k in ("suppression", "reason", "created_at")})
    return found


async def act(
    conn: Conn, action: Action, lead_ids: Sequence[int], *, actor: str, now: datetime
) -> list[Outcome]:
    """Apply `action` to each lead the lifecycle allows it for, in one transaction."""
    statement, event_type = _ACTIONS[action]
    ids = sorted(set(lead_ids))
    async with conn.transaction():
        before = {
            r["id"]: r["status"]
            for r in await conn.fetch(
                "SELECT id, status FROM leads WHERE id = ANY($1::bigint[]) ORDER BY id"
                " FOR NO KEY UPDATE",
                ids,
            )
        }
        # A retried lead whose address is suppressed would only be stopped again: it is not
        # retried, and the answer says why (lifting a suppression is its own act).
        held = await suppressed(conn, ids) if action is Action.RETRY else {}
        movable = [i for i in ids if i not in held]
        rows = await conn.fetch(query("lead_status", statement), movable, now)
        data: dict[str, object] = {"actor": actor}
        if action is Action.STOP:
            data["reason"] = "operator"
        await events.insert_many(
            conn, [Event(r["id"], r["current_step"], event_type, data) for r in rows], now
        )
    changed = {r["id"] for r in rows}
    return [
        Outcome(i, i in changed, before.get(i), _why(held[i]) if i in held else None)
        for i in lead_ids
    ]


def _why(held: dict[str, Any]) -> str:
    return (
        f"its address is suppressed ({held['suppression']}, reason {held['reason']},"
        f" since {held['created_at']:%Y-%m-%d}): lift the suppression first"
        f" (ops suppress remove {held['suppression']})"
    )
