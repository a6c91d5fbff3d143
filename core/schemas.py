"""The message on the send queue: what the scheduler renders and the worker trusts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["SendJob", "ValidationError"]


class SendJob(BaseModel):
    """One rendered step for one lead; the outbox payload and the broker message body."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    lead_id: int = Field(gt=0)
    step: int = Field(ge=1)
    attempt: int = Field(ge=1)
    sender_id: int = Field(gt=0)
    from_address: str = Field(min_length=3, max_length=254)
    from_name: str | None = None
    to_address: str = Field(min_length=3, max_length=254)
    subject: str = Field(max_length=1000)
    text: str
    html: str | None = None
    message_id: str = Field(pattern=r"^<[^<>\s]+@[^<>\s]+>$")
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)
    list_unsubscribe: str | None = None
    list_unsubscribe_post: bool = False
    first_touch: bool = False
    # The sending window stretch this message was planned for (None: always open).
    not_after: datetime | None = None
