"""What a use case answers a request it cannot carry out with; each door turns them into its
own form (an exit status and a line, an RFC 9457 problem, a message on the page)."""

from __future__ import annotations


class NotFound(LookupError):
    """No such lead, sequence, sender, token..."""


class Invalid(ValueError):
    """A field that cannot be stored; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class Conflict(ValueError):
    """The thing exists already (a sender with that address)."""
