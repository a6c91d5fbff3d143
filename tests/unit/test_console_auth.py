"""Who may sign in to the console, and the console's settings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from core.roles import Allowed
from runtime.settings import ApiSettings

BASE = {"database_url": "postgresql://x/y", "amqp_url": "amqp://guest:guest@x/"}
SECRET = "s" * 32


def test_allowed_addresses_and_domains() -> None:
    allowed = Allowed.parse("Ana@Acme.test, @ops.acme.test  bo@x.test")
    assert "ana@acme.test" in allowed
    assert "ANA@ACME.TEST" in allowed
    assert "bo@x.test" in allowed
    assert "anyone@ops.acme.test" in allowed
    for refused in ("eve@acme.test", "x@evil.ops.acme.test", "ops.acme.test", "a@b@ops.acme.test",
                    "", None, "@ops.acme.test"):  # fmt: skip
        assert refused not in allowed, refused


@given(st.emails())
def test_nothing_is_allowed_by_an_empty_list(email: str) -> None:
    assert email not in Allowed.parse("")


def test_the_console_needs_all_its_settings() -> None:
    assert not ApiSettings(**BASE).console_on  # type: ignore[arg-type]
    full = {"oidc_issuer": "https://accounts.google.com", "oidc_client_id": "id",
            "oidc_client_secret": "secret", "console_allowed": "@acme.test",
            "session_secret": SECRET}  # fmt: skip
    assert ApiSettings(**BASE, **full).console_on  # type: ignore[arg-type]
    for missing, named in (("oidc_client_id", "OIDC_CLIENT_ID"),
                           ("console_allowed", "CONSOLE_ALLOWED"),
                           ("session_secret", "SESSION_SECRET")):  # fmt: skip
        with pytest.raises(ValidationError, match=named):
            ApiSettings(**BASE, **{k: v for k, v in full.items() if k != missing})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="SESSION_SECRET of at least 32"):
        ApiSettings(**BASE, **{**full, "session_secret": "short"})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="https"):
        ApiSettings(**BASE, **{**full, "oidc_issuer": "http://idp.example.com"})  # type: ignore[arg-type]
