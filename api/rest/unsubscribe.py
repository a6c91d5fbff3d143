"""One-click unsubscribe (RFC 8058) at the link a message carries: a GET shows a button (mail
scanners follow links), a POST applies it; again is harmless."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse

from api.deps import Pool
from core.unsubscribe import InvalidToken
from db.stops import apply_unsubscribe_token

router = APIRouter()


def confirm_page() -> HTMLResponse:
    # A GET never unsubscribes: mail scanners follow links. The form posts back to the
    # address it was opened at, whatever prefix a proxy serves the API under.
    return HTMLResponse(
        _PAGE.format(
            body='<form method="post"><p>Stop receiving these emails?</p>'
            '<button type="submit">Unsubscribe</button></form>'
        )
    )


async def apply_one_click(request: Request, pool: asyncpg.Pool, token: str) -> HTMLResponse:
    """RFC 8058 one-click: applies at once; again is harmless."""
    secret = request.app.state.settings.unsubscribe_secret.get_secret_value()
    try:
        async with pool.acquire() as conn:
            await apply_unsubscribe_token(conn, secret, token)
    except InvalidToken:
        return HTMLResponse(_PAGE.format(body="<p>This link is not valid.</p>"), 400)
    except ValueError:  # no secret configured: nothing can be verified
        return HTMLResponse(_PAGE.format(body="<p>Unsubscribing is not set up.</p>"), 503)
    return HTMLResponse(_PAGE.format(body="<p>You are unsubscribed.</p>"))


# The link a message carries is UNSUBSCRIBE_URL/{token}; `/u?token=` is the form of
# links in mail sent before, still honoured.
@router.get("/u/{token}", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe_page(token: Annotated[str, Path(max_length=800)]) -> HTMLResponse:
    return confirm_page()


@router.get("/u", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe_page_query(token: Annotated[str, Query(max_length=800)]) -> HTMLResponse:
    return confirm_page()


@router.post("/u/{token}", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe_now(
    request: Request, pool: Pool, token: Annotated[str, Path(max_length=800)]
) -> HTMLResponse:
    return await apply_one_click(request, pool, token)


@router.post("/u", response_class=HTMLResponse, include_in_schema=False)
async def unsubscribe_now_query(
    request: Request, pool: Pool, token: Annotated[str, Query(max_length=800)]
) -> HTMLResponse:
    return await apply_one_click(request, pool, token)


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Unsubscribe</title>
</head><body><main>{body}</main></body></html>"""
