"""Choosing a sender for leads enrolled without one: the sequence sender with most room."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from db.leads import SenderCandidate

_UNLIMITED = 10**12


def assign(
    leads: Iterable[tuple[int, int]], candidates: Iterable[SenderCandidate]
) -> dict[int, SenderCandidate]:
    """Map lead id -> sender for (lead id, sequence id) pairs; leads with no candidate are left out.

    Free room is the daily limit minus the last day's sends (unlimited when NULL); ties go
    to the sender with fewer leads, then the lower id. Each assignment uses one unit of room.
    """
    by_seq: dict[int, list[list[int]]] = defaultdict(list)
    info: dict[int, SenderCandidate] = {}
    for c in candidates:
        free = _UNLIMITED if c.daily_limit is None else c.daily_limit - c.sent_last_day
        by_seq[c.sequence_id].append([-free, c.assigned, c.sender_id])
        info[c.sender_id] = c
    chosen: dict[int, SenderCandidate] = {}
    for lead_id, seq_id in leads:
        options = by_seq.get(seq_id)
        if not options:
            continue
        best = min(options)
        best[0] += 1
        best[1] += 1
        chosen[lead_id] = info[best[2]]
    return chosen
