"""Who may do what: three roles, each allowed what the one below it may do and more.

`viewer` reads; `operator` also acts on leads and sequences, imports and works the inbox;
`admin` also manages senders and their accounts, tokens, webhooks, sessions, erasure and
reads the audit trail. Which role each route needs is declared once, in `api/roles.py`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, need: Role) -> bool:
        """Whether someone with this role may do what needs `need`."""
        return self.rank >= need.rank

    @classmethod
    def parse(cls, text: str) -> Role:
        """A role by its name (any case); ValueError naming the choices otherwise."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            choices = ", ".join(r.value for r in cls)
            raise ValueError(f"{text!r} is not a role (one of {choices})") from None


_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


@dataclass(frozen=True, slots=True)
class Allowed:
    """`CONSOLE_ALLOWED`: addresses and @domains, comma- or space-separated, each with an
    optional `:role` (`@acme.com:viewer`, `boss@acme.com:admin`); a bare entry is an
    operator. An address's own entry wins over its domain's."""

    addresses: dict[str, Role]
    domains: dict[str, Role]

    @classmethod
    def parse(cls, text: str) -> Allowed:
        """The entries of `text`; ValueError naming the first bad one."""
        addresses: dict[str, Role] = {}
        domains: dict[str, Role] = {}
        for entry in text.replace(",", " ").split():
            who, colon, role_name = entry.strip().lower().partition(":")
            try:
                role = Role.parse(role_name) if colon else Role.OPERATOR
            except ValueError as exc:
                raise ValueError(f"CONSOLE_ALLOWED entry {entry!r}: {exc}") from None
            if who.startswith("@") and who.count("@") == 1 and len(who) > 1:
                domains[who[1:]] = role
            elif who.count("@") == 1 and not who.startswith("@") and not who.endswith("@"):
                addresses[who] = role
            else:
                raise ValueError(f"CONSOLE_ALLOWED entry {entry!r}: not an address or an @domain")
        return cls(addresses, domains)

    def role(self, email: object) -> Role | None:
        """The role of `email` in the console, or None when it may not sign in."""
        if not isinstance(email, str) or email.count("@") != 1 or email.startswith("@"):
            return None
        address = email.strip().lower()
        found = self.addresses.get(address)
        return found if found is not None else self.domains.get(address.rpartition("@")[2])

    def __contains__(self, email: object) -> bool:
        return self.role(email) is not None
