"""The console's pages and the forms behind them; every one calls a use case in `ops/`."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time
from pathlib import Path as FilePath
from typing import Annotated, Any, TextIO, cast

import asyncpg
import structlog
from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.datastructures import UploadFile
from yarl import URL

from api import roles
from api.console import auth
from api.deps import Pool
from broker.topology import Names
from core import lifecycle
from core.clock import utcnow
from core.lifecycle import Status
from core.roles import Allowed, Role
from ops import (
    actions,
    dead_letters,
    definitions,
    emails,
    imports,
    leads,
    preflight,
    previews,
    senders,
    sequences,
    sessions,
    status,
    suppressions,
    tokens,
)
from ops import audit as ops_audit
from ops import dkim as ops_dkim
from ops.errors import Conflict, Invalid, NotFound
from runtime.dns import resolver

log = structlog.get_logger()

templates = Jinja2Templates(directory=FilePath(__file__).parent / "templates")
env = templates.env
router = APIRouter(include_in_schema=False)

# The rejected rows an import page lists (all of them are in its download).
REJECTS_SHOWN = 200


# --- template helpers ------------------------------------------------------------------


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else ("—" if value is None else str(value))


def _when(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "—"
    seconds = ((now or utcnow()) - value).total_seconds()
    later, seconds = seconds < 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            text = f"{seconds / size:.0f} {unit}"
            break
    else:
        text = f"{seconds:.0f} s"
    return f"in {text}" if later else f"{text} ago"


def _user_text(value: Any) -> Markup:
    """Text from leads or senders: escaped, and isolated so a right-to-left run or an
    override character cannot reorder the page around it."""
    return Markup("<bdi>{}</bdi>").format("" if value is None else value)


env.filters["n"] = _number
env.filters["ago"] = _when
env.filters["u"] = _user_text
env.filters["json"] = lambda v: json.dumps(v, default=str, ensure_ascii=False, indent=1)
env.globals["statuses"] = [s.value for s in Status]

NAV = [
    ("/", "Overview"),
    ("/sequences", "Sequences"),
    ("/leads", "Leads"),
    ("/inbox", "Inbox"),
    ("/import", "Import"),
    ("/emails/new", "Schedule an email"),
    ("/dead-letters", "Dead letters"),
    ("/suppressions", "Suppressions"),
    ("/senders", "Senders"),
    ("/webhooks", "Webhooks"),
    ("/sessions", "Sessions"),
    ("/audit", "Audit"),
    ("/tokens", "API tokens"),
]


def page(request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    """A page (or, for htmx, a fragment) with the signed-in user, their role, the CSRF token,
    and `may(method, route)`: whether they may take an action (the page shows only those)."""
    ctx.setdefault("title", name.removesuffix(".html").replace("_", " ").capitalize())
    ctx.setdefault("note", request.session.pop("note", None))
    role: Role | None = getattr(request.state, "role", None)

    def may(method: str, route: str) -> bool:
        return roles.may(role, method, route)

    return templates.TemplateResponse(
        request,
        name,
        {
            "user": getattr(request.state, "user", None),
            "role": role,
            "may": may,
            "csrf": auth.csrf_token(request),
            "nav": [(href, label) for href, label in NAV if may("GET", href)],
            "path": request.url.path,
            "now": utcnow(),
            **ctx,
        },
        status_code=status_code,
    )


def problem(request: Request, code: int, message: str) -> HTMLResponse:
    return page(request, "problem.html", code, title="Not done", message=message)


User = Annotated[str, Depends(auth.user)]
Checked = Depends(auth.check_csrf)


async def _form(request: Request) -> dict[str, str]:
    """A posted form's text fields (files and repeated fields are read where they are used)."""
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


def _back(request: Request, to: str, note: str | None = None) -> RedirectResponse:
    """After a change: to `to`, which shows `note` once (kept in the session, not the URL,
    so no link can put words on a console page)."""
    if note:
        request.session["note"] = note
    return RedirectResponse(to, status_code=303)


# --- signing in ------------------------------------------------------------------------


@router.get("/signin")
async def signin(request: Request) -> HTMLResponse:
    return page(request, "signin.html", title="Sign in", why=request.session.pop("refused", None))


@router.get("/auth/login")
async def login(request: Request) -> Any:
    known: auth.Auth = request.app.state.console_auth
    return await known.start(request, str(request.url_for("auth_callback")))


@router.get("/auth/callback", name="auth_callback")
async def callback(request: Request) -> Response:
    known: auth.Auth = request.app.state.console_auth
    try:
        email = await known.finish(request)
    except auth.Refused as exc:
        request.session.clear()
        request.session["refused"] = str(exc)
        return RedirectResponse("/signin", status_code=303)
    request.session.clear()  # a new session for the signed-in person (no fixation)
    async with request.app.state.pool.acquire() as conn:
        request.session[auth.SESSION_KEY] = await sessions.start(
            conn, email, max_age=request.app.state.settings.session_max_age_seconds,
            now=utcnow(),
        )  # fmt: skip
    auth.csrf_token(request)
    return RedirectResponse("/", status_code=303)


@router.post("/auth/logout", dependencies=[Checked])
async def logout(request: Request) -> Response:
    token = request.session.get(auth.SESSION_KEY)
    if isinstance(token, str):
        async with request.app.state.pool.acquire() as conn:
            email = await sessions.end(conn, token, "signed out", utcnow())
        log.info("console_signed_out", email=email)
    request.session.clear()
    return RedirectResponse("/signin", status_code=303)


@router.get("/audit")
async def audit_page(
    request: Request,
    pool: Pool,
    _user: User,
    target: str = "",
    before: Annotated[int, Query(ge=0)] = 0,
) -> HTMLResponse:
    async with pool.acquire() as conn:
        rows = await ops_audit.listing(
            conn, target=target.strip() or None, before=before or 2**63 - 1, limit=100
        )
    return page(
        request, "audit.html", title="Audit trail", rows=rows, target=target,
        next_before=rows[-1]["id"] if len(rows) == 100 else None,
    )  # fmt: skip


@router.get("/sessions")
async def session_page(request: Request, pool: Pool, _user: User) -> HTMLResponse:
    async with pool.acquire() as conn:
        rows = await sessions.listing(conn, utcnow())
    allowed: Allowed = request.app.state.console_auth.allowed
    rows = [{**r, "role": allowed.role(r["email"])} for r in rows]
    mine = sessions.key(str(request.session.get(auth.SESSION_KEY, "")))
    return page(request, "sessions.html", title="Sessions", rows=rows, mine=mine)


@router.post("/sessions/end", dependencies=[Checked])
async def session_end(
    request: Request, pool: Pool, user: User, key: Annotated[str, Form(max_length=16)]
) -> Response:
    async with pool.acquire() as conn:
        ended = await sessions.end_by_key(conn, key, f"ended by {user}", utcnow())
    log.info("console_session_ended", by=user, email=ended)
    return _back(request, "/sessions", f"ended {ended}'s session" if ended else "already ended")


# --- overview --------------------------------------------------------------------------


def overview_context(view: status.Overview, chart: status.Chart) -> dict[str, Any]:
    """What the overview shows, from one status read and one chart read."""
    totals = dict.fromkeys(Status, 0)
    for s in view.sequences:
        for k, v in s.leads.items():
            totals[Status(k)] += v
    bars = [h["sent"] + h["failed"] for h in chart.past]
    return {
        "view": view,
        "chart": chart,
        "totals": totals,
        "sent_hour": sum(s.sent_last_hour for s in view.senders),
        "peak": max([1, *bars, *chart.due]),
    }


async def _overview(request: Request) -> dict[str, Any]:
    shared: status.Shared = request.app.state.status
    return overview_context(await shared.get(), await shared.chart())


@router.get("/")
async def overview(request: Request, _user: User) -> HTMLResponse:
    return page(request, "overview.html", title="Overview", **await _overview(request))


@router.get("/live/overview")
async def overview_live(request: Request, _user: User) -> HTMLResponse:
    return page(request, "overview_live.html", note=None, **await _overview(request))


# --- sequences -------------------------------------------------------------------------


@router.get("/sequences")
async def sequence_list(request: Request, pool: Pool, _user: User) -> HTMLResponse:
    view = await request.app.state.status.get()
    async with pool.acquire() as conn:
        items = await definitions.sequences(conn, limit=500)
        funnels = {}
        for s in items:
            steps = await definitions.steps(conn, s["id"])
            rows = await status.funnel(conn, s["id"], [st["position"] for st in steps])
            funnels[s["id"]] = (rows, _totals(rows))
    by_id = {s.id: s for s in view.sequences}
    return page(
        request,
        "sequences.html",
        title="Sequences",
        items=items,
        funnels=funnels,
        counts=by_id,
    )


def _totals(rows: list[tuple[int, dict[str, int]]]) -> dict[str, int]:
    return {k: sum(r[k] for _, r in rows) for k in status.OUTCOMES}


def _time(text: str) -> time | None:
    text = text.strip()
    if not text or text.startswith("24:"):
        return None
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise Invalid("window", f"{text!r} is not a time of day (HH:MM)") from None


async def _sequence_fields(request: Request) -> dict[str, Any]:
    """A sequence's settings from its form (the senders are checkboxes, one field each)."""
    posted = await request.form()
    form = {k: v for k, v in posted.items() if isinstance(v, str)}
    sender_list = [v for v in posted.getlist("senders") if isinstance(v, str)]
    if not form.get("name", "").strip():
        raise Invalid("name", "a sequence needs one")
    days = [
        n
        for d in form.get("send_days", "").replace(",", " ").split()
        if (n := _whole(d)) is not None
    ]
    return {
        "name": form.get("name", "").strip(),
        "timezone": form.get("timezone", "UTC").strip() or "UTC",
        "send_days": days or None,
        "send_from": _time(form.get("send_from", "")),
        "send_until": _time(form.get("send_until", "")),
        "stop_on_company_reply": form.get("stop_on_company_reply") == "on",
        "senders": sender_list,
    }


@router.post("/sequences", dependencies=[Checked])
async def sequence_create(request: Request, pool: Pool, _user: User) -> Response:
    try:
        fields = await _sequence_fields(request)
        async with pool.acquire() as conn:
            seq_id = await definitions.create_sequence(conn, definitions.SequenceSpec(**fields))
    except (Invalid, NotFound, Conflict, ValueError) as exc:
        return problem(request, 422, str(exc))
    except asyncpg.UniqueViolationError:
        return problem(request, 409, "a sequence with that name exists")
    return _back(request, f"/sequences/{seq_id}", "created")


@router.get("/sequences/{seq_id}")
async def sequence_page(request: Request, pool: Pool, _user: User, seq_id: int) -> HTMLResponse:
    async with pool.acquire() as conn:
        try:
            seq = await definitions.sequence(conn, seq_id)
        except NotFound as exc:
            return problem(request, 404, str(exc))
        steps = await definitions.steps(conn, seq_id)
        all_senders = await definitions.senders(conn, limit=500)
        funnel = await status.funnel(conn, seq_id, [st["position"] for st in steps])
    return page(
        request,
        "sequence.html",
        title=seq["name"],
        seq=seq,
        steps=steps,
        senders=all_senders,
        funnel=funnel,
    )


@router.post("/sequences/{seq_id}", dependencies=[Checked])
async def sequence_edit(request: Request, pool: Pool, _user: User, seq_id: int) -> Response:
    try:
        fields = await _sequence_fields(request)
        async with pool.acquire() as conn:
            await definitions.update_sequence(conn, seq_id, fields)
    except (Invalid, NotFound, Conflict, ValueError) as exc:
        return problem(request, 422, str(exc))
    return _back(request, f"/sequences/{seq_id}", "saved")


@router.post("/sequences/{seq_id}/status", dependencies=[Checked])
async def sequence_status(
    request: Request, pool: Pool, user: User, seq_id: int, to: Annotated[str, Form()]
) -> Response:
    if to not in ("active", "paused"):
        return problem(request, 422, "a sequence can be active or paused")
    try:
        async with pool.acquire() as conn:
            changed = await sequences.set_status(
                conn, seq_id, to, actor=f"console:{user}", now=utcnow()
            )
    except NotFound as exc:
        return problem(request, 404, str(exc))
    back = str((await request.form()).get("next") or "/sequences")
    if not back.startswith("/sequences") or "//" in back or "\\" in back:
        back = "/sequences"  # only back to a sequences page: never elsewhere
    done = "paused" if to == "paused" else "resumed"
    # A page opened before someone else's change asks for what is so already: a note.
    return _back(request, back, done if changed else f"already {to}")


def _step(form: dict[str, str]) -> definitions.StepSpec:
    try:
        wait = round(float(form.get("wait_hours", "0") or 0) * 3600)
        position = int(form.get("position", "0"))
    except ValueError:
        raise Invalid(
            "step", "the wait is a number of hours, the position a whole number"
        ) from None
    if wait < 0 or position < 0:
        raise Invalid("step", "the wait and the position cannot be negative")
    return definitions.StepSpec(
        position=position,
        wait_seconds=wait,
        subject=form.get("subject") or None,
        body_text=form.get("body_text", ""),
        body_html=form.get("body_html") or None,
    )


@router.post("/sequences/{seq_id}/preview", dependencies=[Checked])
async def step_preview(request: Request, pool: Pool, _user: User, seq_id: int) -> HTMLResponse:
    form = await _form(request)
    lead = form.get("lead", "").strip()
    try:
        step = _step(form)
        lead_id = _whole(lead)
        async with pool.acquire() as conn:
            shown = await previews.preview(conn, seq_id, step, lead_id=lead_id, now=utcnow())
    except (Invalid, NotFound) as exc:
        shown = previews.Preview(lead or "—", "—", error=str(exc))
    return page(request, "preview.html", note=None, shown=shown)


@router.post("/sequences/{seq_id}/steps", dependencies=[Checked])
async def step_save(request: Request, pool: Pool, _user: User, seq_id: int) -> Response:
    try:
        step = _step(await _form(request))
        async with pool.acquire() as conn:
            # Saved only if it renders (for a sample lead), as the scheduler will render it.
            shown = await previews.preview(conn, seq_id, step, lead_id=None, now=utcnow())
            if shown.error:
                return problem(request, 422, f"not saved: {shown.error}")
            await definitions.put_step(conn, seq_id, step)
    except (Invalid, NotFound, Conflict) as exc:
        return problem(request, 422, str(exc))
    return _back(request, f"/sequences/{seq_id}", "step saved")


# --- leads -----------------------------------------------------------------------------


@router.get("/leads")
async def lead_list(
    request: Request,
    pool: Pool,
    _user: User,
    *,
    q: Annotated[str, Query(max_length=254)] = "",
    sequence: Annotated[str, Query(max_length=20)] = "",
    state: Annotated[str, Query(max_length=20)] = "",
    after: Annotated[int, Query(ge=0)] = 0,
) -> HTMLResponse:
    query = q.strip()
    async with pool.acquire() as conn:
        if _whole(query) is not None:
            items = await leads.listing(conn, after=int(query) - 1, limit=1)
            items = [i for i in items if i["id"] == int(query)]
        else:
            items = await leads.listing(
                conn,
                status=state if state in {s.value for s in Status} else None,
                sequence_id=_whole(sequence),
                email=query or None,
                after=after,
                limit=50,
            )
        seqs = await definitions.sequences(conn, limit=500)
    return page(
        request,
        "leads.html",
        title="Leads",
        items=items,
        q=query,
        sequence=sequence,
        state=state,
        seqs=seqs,
        next_after=items[-1]["id"] if len(items) == 50 else None,
    )


@router.get("/leads/{lead_id}")
async def lead_page(request: Request, pool: Pool, _user: User, lead_id: int) -> HTMLResponse:
    async with pool.acquire() as conn:
        try:
            view = await leads.show(conn, lead_id)
        except NotFound as exc:
            return problem(request, 404, str(exc))
    return page(
        request,
        "lead.html",
        title=f"Lead {lead_id}",
        view=view,
        actions=[
            a.value
            for a in actions.Action
            if lifecycle.allowed(Status(view.lead["status"]), lifecycle.Move(a.value))
        ],
    )


@router.post("/leads/{lead_id}/{action}", dependencies=[Checked])
async def lead_act(request: Request, pool: Pool, user: User, lead_id: int, action: str) -> Response:
    try:
        act = actions.Action(action)
    except ValueError:
        return problem(request, 404, f"no action {action!r}")
    async with pool.acquire() as conn:
        (done,) = await actions.act(conn, act, [lead_id], actor=f"console:{user}", now=utcnow())
    if done.status_before is None:
        return problem(request, 404, f"no lead {lead_id}")
    if not done.changed:
        return problem(
            request, 409, done.why or f"a lead that is {done.status_before} cannot {action}"
        )
    return _back(request, f"/leads/{lead_id}", f"{action} done")


# --- import ----------------------------------------------------------------------------


@router.get("/import")
async def import_page(request: Request, pool: Pool, _user: User) -> HTMLResponse:
    async with pool.acquire() as conn:
        seqs = await definitions.sequences(conn, limit=500)
    return page(request, "import.html", title="Import leads", seqs=seqs, report=None)


@router.post("/import", dependencies=[Checked])
async def import_run(request: Request, pool: Pool, user: User) -> HTMLResponse:
    # The file arrives streamed into a spool file (held to API_MAX_BODY_BYTES by
    # api/limits.py); its rejected rows go to another, kept in the database for download.
    form = await request.form()
    upload = form.get("file")
    seq = str(form.get("sequence", ""))
    if not isinstance(upload, UploadFile) or _whole(seq) is None:
        return problem(request, 422, "choose a sequence and a CSV file")
    dry_run = form.get("dry_run") == "on"
    on_duplicate = str(form.get("on_duplicate", "skip"))
    if on_duplicate not in ("skip", "update"):
        return problem(request, 422, "on duplicate: skip or update")
    with tempfile.SpooledTemporaryFile(max_size=2**20, mode="w+", newline="") as spool:
        out = cast(TextIO, spool)
        rejects = imports.RejectFile(out)
        try:
            text = imports.text_of(upload.file)
            async with pool.acquire() as conn:
                report = await imports.import_leads(
                    conn,
                    int(seq),
                    imports.records(text, "csv"),
                    on_duplicate=on_duplicate,
                    dry_run=dry_run,
                    rejects=rejects,
                    keep_rejections=REJECTS_SHOWN,
                )
                seqs = await definitions.sequences(conn, limit=500)
                token = None
                if report.rejected:
                    out.seek(0)
                    token = await imports.keep_rejects(conn, user, out)
        except (NotFound, Invalid) as exc:
            return problem(request, 422, str(exc))
    log.info(
        "console_import",
        sequence=int(seq),
        dry_run=dry_run,
        rows=report.rows,
        imported=report.imported,
        rejected=report.rejected,
    )
    return page(
        request,
        "import.html",
        title="Import leads",
        seqs=seqs,
        report=report,
        rejects_token=token,
        chosen=int(seq),
    )


@router.get("/import/rejected/{token}.csv")
async def import_rejects(
    pool: Pool, user: User, token: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
) -> Response:
    """The rejected rows of an import this person ran in the past day, as a file."""
    try:
        parts = await imports.rejects(pool, token, user)
    except NotFound as exc:
        return Response(str(exc), status_code=404, media_type="text/plain")
    return StreamingResponse(
        parts,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="rejected.csv"'},
    )


# --- one email -------------------------------------------------------------------------


@router.get("/emails/new")
async def email_page(request: Request, pool: Pool, _user: User) -> HTMLResponse:
    async with pool.acquire() as conn:
        all_senders = await definitions.senders(conn, limit=500)
    return page(request, "email.html", title="Schedule an email", senders=all_senders, done=None)


@router.post("/emails", dependencies=[Checked])
async def email_send(request: Request, pool: Pool, user: User) -> HTMLResponse:
    form = await _form(request)
    send_at = None
    if form.get("send_at"):
        try:  # the form asks for UTC
            send_at = datetime.fromisoformat(form["send_at"]).replace(tzinfo=UTC)
        except ValueError:
            return problem(request, 422, "send at: a date and time (UTC)")
    try:
        async with pool.acquire() as conn:
            done = await emails.schedule(
                conn,
                to=form.get("to", "").strip(),
                subject=form.get("subject", ""),
                body_text=form.get("body_text", ""),
                sender=form.get("sender", ""),
                body_html=form.get("body_html") or None,
                send_at=send_at,
                idempotency_key=form.get("idempotency_key") or None,
                now=utcnow(),
            )
            all_senders = await definitions.senders(conn, limit=500)
    except (Invalid, NotFound, Conflict, ValueError) as exc:
        return problem(request, 422, str(exc))
    log.info("console_email_scheduled", by=user, lead=done.id)
    return page(request, "email.html", title="Schedule an email", senders=all_senders, done=done)


# --- dead letters, suppressions, senders, tokens ---------------------------------------


def _names(request: Request) -> tuple[str, Names]:
    settings = request.app.state.settings
    return settings.amqp_url, Names.from_prefix(settings.amqp_prefix)


@router.get("/dead-letters")
async def dead_page(request: Request, pool: Pool, _user: User) -> HTMLResponse:
    url, names = _names(request)
    async with pool.acquire() as conn:
        try:
            letters = await dead_letters.listing(conn, url, names, limit=200, now=utcnow())
        except (OSError, TimeoutError) as exc:
            return problem(request, 503, f"the broker cannot be reached: {exc}")
    return page(
        request,
        "dead_letters.html",
        title="Dead letters",
        letters=letters,
    )


async def _letter_ids(request: Request) -> list[str] | None:
    return [str(i) for i in (await request.form()).getlist("id")] or None


@router.post("/dead-letters/replay", dependencies=[Checked])
async def dead_replay(request: Request, _user: User) -> Response:
    url, names = _names(request)
    done = await dead_letters.replay(url, names, await _letter_ids(request), None)
    return _back(request, "/dead-letters", f"replay: {len(done)}")


@router.post("/dead-letters/purge", dependencies=[Checked])
async def dead_purge(request: Request, _user: User) -> Response:
    url, names = _names(request)
    ids = await _letter_ids(request)
    if not ids:
        return problem(request, 422, "choose the letters to purge")
    done = await dead_letters.purge(url, names, ids)
    return _back(request, "/dead-letters", f"purge: {len(done)}")


@router.get("/suppressions")
async def suppression_page(
    request: Request, pool: Pool, _user: User, after: Annotated[str, Query(max_length=254)] = ""
) -> HTMLResponse:
    async with pool.acquire() as conn:
        rows = await suppressions.listing(conn, limit=100, after=after)
    return page(
        request,
        "suppressions.html",
        title="Suppressions",
        rows=rows,
        next_after=rows[-1].email if len(rows) == 100 else None,
    )


@router.post("/suppressions", dependencies=[Checked])
async def suppression_add(
    request: Request, pool: Pool, _user: User, entry: Annotated[str, Form(max_length=254)]
) -> Response:
    try:
        async with pool.acquire() as conn:
            added, stopped = await suppressions.add(conn, entry, "manual")
    except suppressions.InvalidEntry as exc:
        return problem(request, 422, f"{entry!r}: {exc}")
    return _back(
        request, "/suppressions", f"added ({stopped} leads stopped)" if added else "already there"
    )


@router.post("/suppressions/remove", dependencies=[Checked])
async def suppression_remove(
    request: Request, pool: Pool, user: User, entry: Annotated[str, Form(max_length=254)]
) -> Response:
    try:
        async with pool.acquire() as conn:
            removed = await suppressions.remove(conn, entry, actor=f"console:{user}", now=utcnow())
    except suppressions.InvalidEntry:
        removed = False
    return _back(request, "/suppressions", "removed" if removed else "not suppressed")


def _dkim_keys(request: Request) -> dict[str, ops_dkim.Published] | None:
    """The newest DKIM key of each domain, where this process is told where keys are."""
    directory = request.app.state.settings.dkim_keys_dir
    if directory is None:
        return None
    try:
        return {k.domain: k for k in ops_dkim.records(directory)}
    except (OSError, ValueError) as exc:
        log.warning("dkim_keys_unreadable", error=str(exc))
        return None


@router.get("/senders")
async def sender_page(request: Request, pool: Pool, _user: User) -> HTMLResponse:
    view = await request.app.state.status.get()
    async with pool.acquire() as conn:
        rows = await definitions.senders(conn, limit=10_000)
    return page(
        request,
        "senders.html",
        title="Senders",
        senders=view.senders,
        dkim=_dkim_keys(request),
        guard={r["id"]: r for r in rows},
        providers=senders.PROVIDERS,
        pct=lambda v: "" if v is None else f"{v * 100:g}",
    )


def _limit(text: str) -> int | None:
    text = text.strip()
    if not text or text == "none":
        return None
    if (n := _whole(text)) is None:
        raise Invalid("limit", f"{text!r} is not a whole number")
    return n


def _whole(text: str) -> int | None:
    """A whole number as people type it: ASCII digits ("²" and "٣" are digits to Python,
    not to int), small enough for the database's bigint; else None."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


async def _change_sender(
    request: Request,
    pool: asyncpg.Pool,
    user: str,
    sender_id: int,
    *,
    read: Callable[[Any], dict[str, Any]],
    change: Callable[..., Awaitable[Any]],
    note: str,
) -> Response:
    """A senders-page form: its fields read into changes, handed to one use case of
    ops/senders.py for that sender; a note, or one clear 422."""
    form = await _form(request)
    try:
        changes = read(form)
        async with pool.acquire() as conn:
            row = await definitions.sender(conn, sender_id)
            await change(conn, row["email"], changes, actor=f"console:{user}", now=utcnow())
    except (Invalid, NotFound, ValueError) as exc:
        return problem(request, 422, str(exc))
    return _back(request, "/senders", note)


def _limits_of(form: Any) -> dict[str, Any]:
    changes = {
        k: _limit(form.get(k, ""))
        for k in ("hourly_limit", "daily_limit", "daily_new_limit", "min_gap_seconds")
    }
    changes["min_gap_seconds"] = changes["min_gap_seconds"] or 0
    return changes


@router.post("/senders/{sender_id}", dependencies=[Checked])
async def sender_limits(request: Request, pool: Pool, user: User, sender_id: int) -> Response:
    return await _change_sender(
        request,
        pool,
        user,
        sender_id,
        read=_limits_of,
        change=senders.set_limits,
        note="limits saved",
    )


def _fraction(text: str) -> float | None:
    """A rate as people type it: 5 or 5% (a percentage); empty: the default."""
    text = text.strip().removesuffix("%").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise Invalid("rate", f"{text!r} is not a percentage") from None
    return value / 100


def _guard_of(form: Any) -> dict[str, Any]:
    """The guard's thresholds (percentages; empty: the GUARD_* settings) and the warm-up."""
    changes: dict[str, Any] = {
        f"guard_{k}": _fraction(form.get(k, ""))
        for k in ("hard_bounce_rate", "complaint_rate", "block_rate")
    }
    changes["guard_min_sample"] = _limit(form.get("min_sample", ""))
    changes["warmup_start"] = _limit(form.get("warmup_start", ""))
    changes["warmup_increment"] = _limit(form.get("warmup_increment", ""))
    if changes["warmup_start"] is not None and changes["warmup_increment"] is None:
        changes["warmup_increment"] = 0
    changes["provider_caps"] = {p: _limit(form.get(f"cap_{p}", "")) for p in senders.PROVIDERS}
    return changes


@router.post("/senders/{sender_id}/guard", dependencies=[Checked])
async def sender_guard(request: Request, pool: Pool, user: User, sender_id: int) -> Response:
    return await _change_sender(
        request,
        pool,
        user,
        sender_id,
        read=_guard_of,
        change=senders.set_guard,
        note="guard saved",
    )


@router.get("/senders/{sender_id}/check")
async def sender_check(request: Request, pool: Pool, _user: User, sender_id: int) -> HTMLResponse:
    """Pre-flight of one sender: what DNS says of its domain and sending host."""
    settings = request.app.state.settings
    try:
        async with pool.acquire() as conn:
            row = await definitions.sender(conn, sender_id)
            url = await conn.fetchval("SELECT smtp_url FROM senders WHERE id = $1", sender_id)
    except NotFound as exc:
        return problem(request, 404, str(exc))
    sender = preflight.Sender(
        email=row["email"],
        sending_host=(URL(url).host if url else None) or settings.smtp_host,
        ehlo_name=settings.smtp_local_hostname or preflight.default_ehlo(),
        dkim_keys_dir=settings.dkim_keys_dir,
    )
    findings = await preflight.check(resolver(settings.dns_nameservers), sender)
    return page(
        request, "check.html", title=f"Pre-flight of {row['email']}", findings=findings,
        sender=row,
    )  # fmt: skip


@router.post("/senders/{sender_id}/resume", dependencies=[Checked])
async def sender_resume(request: Request, pool: Pool, user: User, sender_id: int) -> Response:
    try:
        async with pool.acquire() as conn:
            row = await definitions.sender(conn, sender_id)
            resumed = await senders.resume(
                conn, row["email"], actor=f"console:{user}", now=utcnow()
            )
    except NotFound as exc:
        return problem(request, 404, str(exc))
    # A page opened before someone else resumed it: a note, not an error.
    return _back(request, "/senders", "resumed" if resumed else "already active")


def _token_page(
    request: Request, rows: list[tokens.TokenInfo], created: Any = None
) -> HTMLResponse:
    return page(request, "tokens.html", title="API tokens", rows=rows, created=created,
                roles=[r.value for r in Role])  # fmt: skip


@router.get("/tokens")
async def token_page(request: Request, pool: Pool, _user: User) -> HTMLResponse:
    async with pool.acquire() as conn:
        rows = await tokens.listing(conn)
    return _token_page(request, rows)


@router.post("/tokens", dependencies=[Checked])
async def token_create(
    request: Request,
    pool: Pool,
    user: User,
    name: Annotated[str, Form(min_length=1, max_length=100)],
    role: Annotated[str, Form(max_length=20)] = "operator",
) -> HTMLResponse:
    try:
        chosen = Role.parse(role)
        async with pool.acquire() as conn:
            secret = await tokens.create(conn, name.strip(), chosen)
            rows = await tokens.listing(conn)
    except tokens.TokenExists as exc:
        return problem(request, 409, str(exc))
    except (Invalid, Conflict, ValueError) as exc:
        return problem(request, 422, str(exc))
    log.info("console_token_created", by=user, name=name, role=chosen.value)
    return _token_page(request, rows, (name, secret))


@router.post("/tokens/revoke", dependencies=[Checked])
async def token_revoke(
    request: Request, pool: Pool, user: User, name: Annotated[str, Form(max_length=100)]
) -> Response:
    async with pool.acquire() as conn:
        done = await tokens.revoke(conn, name, utcnow())
    log.info("console_token_revoked", by=user, name=name, done=done)
    return _back(request, "/tokens", "revoked" if done else "no such live token")
