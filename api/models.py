"""What the REST API takes and returns (the OpenAPI schema is made from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.lifecycle import Status
from ops.suppressions import ADDRESS_PATTERN, ENTRY_PATTERN


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Lead(BaseModel):
    id: int
    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    status: Status
    current_step: int
    next_run_at: datetime | None
    sequence_id: int
    sender_id: int | None
    enrolled_at: datetime


class LeadPage(BaseModel):
    items: list[Lead]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class Delivery(BaseModel):
    step: int
    message_id: str
    status: str
    attempts: int
    sent_at: datetime | None
    smtp_code: int | None
    error: str | None


class Event(BaseModel):
    id: int
    step: int | None
    type: str
    at: datetime
    data: dict[str, Any]


class LeadDetail(BaseModel):
    lead: dict[str, Any]
    deliveries: list[Delivery]
    events: list[Event]


class ActionResult(BaseModel):
    lead_id: int
    action: str
    changed: bool
    status_before: str | None


class Address(Strict):
    email: str = Field(
        min_length=3, max_length=254, pattern=ADDRESS_PATTERN, examples=["bob@example.com"]
    )


class Stopped(BaseModel):
    email: str
    stopped: int = Field(description="leads stopped by this call")


class SuppressionIn(Strict):
    email: str = Field(
        min_length=3,
        max_length=254,
        pattern=ENTRY_PATTERN,
        description="an address, or *@domain for a whole domain",
    )
    reason: str = Field(default="manual", min_length=1, max_length=100)


class Suppression(BaseModel):
    email: str
    reason: str
    created_at: datetime


class SuppressionAdded(BaseModel):
    email: str
    added: bool
    stopped: int


class SuppressionPage(BaseModel):
    items: list[Suppression]
    next_cursor: str | None


class Health(BaseModel):
    status: str


class ProblemDetail(BaseModel):
    """RFC 9457 problem details; `errors` names each bad field of an invalid request."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entry for problem answers with these status codes."""
    return {
        code: {"model": ProblemDetail, "content": {"application/problem+json": {}}}
        for code in codes
    }
