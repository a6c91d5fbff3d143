"""What travels on the send queue, and what the worker trusts.

The scheduler renders a step into a `SendJob` and stores it in the outbox row of the lead's
transaction. The broker carries only a `JobRef` naming that row (its id is the message id)
and the lead, step and attempt it is for: the worker reads the job itself from the database,
so whoever can publish on the broker cannot choose a recipient, a sender or a text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["JobRef", "SendJob", "ValidationError"]

BigId = Annotated[int, Field(gt=0, le=2**63 - 1)]
Small = Annotated[int, Field(ge=1, le=2**31 - 1)]


class SendJob(BaseModel):
    """One rendered step for one lead: the outbox row's payload."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: Literal[1] = 1
    lead_id: BigId
    step: Small
    attempt: Small
    sender_id: BigId
    sequence_id: BigId | None = None
    from_address: str = Field(min_length=3, max_length=254)
    from_name: str | None = Field(default=None, max_length=1000)
    to_address: str = Field(min_length=3, max_length=254)
    subject: str = Field(max_length=1000)
    text: str
    html: str | None = None
    message_id: str = Field(pattern=r"^<[^<>\s]+@[^<>\s]+>$", max_length=400)
    in_reply_to: str | None = Field(default=None, max_length=400)
    references: list[str] = Field(default_factory=list, max_length=1000)
    list_unsubscribe: str | None = Field(default=None, max_length=2000)
    list_unsubscribe_post: bool = False
    first_touch: bool = False
    # The sending window stretch this message was planned for (None: always open).
    not_after: datetime | None = None


class JobRef(BaseModel):
    """The broker message body: which outbox row, for which lead, step and attempt."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: Literal[2] = 2
    lead_id: BigId
    step: Small
    attempt: Small

    def body(self) -> bytes:
        """The JSON body as the pump publishes it."""
        return ref_body(self.lead_id, self.step, self.attempt)


def ref_body(lead_id: int, step: int, attempt: int) -> bytes:
    """A `JobRef` body, written directly (the pump makes one per outbox row)."""
    return b'{"v":2,"lead_id":%d,"step":%d,"attempt":%d}' % (lead_id, step, attempt)
