"""`python -m ops`: the operator's commands. Exit 0 done, 1 failed, 2 usage or settings,
3 partly done. `--json` prints data as JSON."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import shtab
from yarl import URL

from broker.topology import Names
from core import dkim as core_dkim
from core import webhooks as core_webhooks
from core.clock import utcnow
from core.roles import Role
from db import audit
from db.migrate import latest_version
from db.pool import Conn, create_pool
from ops import (
    actions,
    dead_letters,
    define,
    definitions,
    dkim,
    errors,
    imports,
    leads,
    people,
    preflight,
    senders,
    sequences,
    status,
    suppressions,
    tokens,
    webhooks,
)
from runtime import health, logs
from runtime.credentials import Box
from runtime.dns import resolver
from runtime.settings import (
    BrokerSettings,
    CommonSettings,
    PreflightSettings,
    WebhookSettings,
    load_or_exit,
)
from runtime.startup import StartupError, check_schema

ACTOR = "cli"
SERVICES = ("scheduler", "pump", "worker", "inbox", "webhooks", "api")


class Failed(Exception):
    """The command could not do what it was asked; the message says why (exit 1)."""


class Partly(Exception):
    """Some of what was asked was done, some not (exit 3)."""


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, default=str, indent=2) if args.json else text)
    args.printed = True


async def _lead_show(conn: Conn, args: argparse.Namespace) -> None:
    (key,) = args.leads
    found = await leads.find(conn, key)
    if not found:
        raise Failed(f"no lead {key!r}")
    views = [await leads.show(conn, i) for i in found]
    if args.json:
        _print(args, [asdict(v) for v in views], "")
        return
    for v in views:
        lead = v.lead
        print(
            f"lead {lead['id']} <{lead['email']}>: {lead['status']} at step "
            f"{lead['current_step']}, next run {lead['next_run_at']}"
        )
        print(f"  sequence {lead['sequence_id']} {lead['sequence']!r}, sender {lead['sender']}")
        if v.suppression:
            s = v.suppression
            print(f"  suppressed: {s['suppression']} ({s['reason']}, since {s['created_at']})")
        for d in v.deliveries:
            print(
                f"  step {d['step']}: {d['status']} after {d['attempts']} attempt(s)"
                f" {d['message_id']} {d['error'] or ''}".rstrip()
            )
        if v.events_dropped_before:
            print(f"  events before {v.events_dropped_before:%Y-%m-%d} are no longer kept")
        for e in v.events:
            print(f"  {e['at']:%Y-%m-%d %H:%M:%S} step {e['step']} {e['type']} {e['data']}")


async def _lead_act(conn: Conn, args: argparse.Namespace) -> None:
    ids = []
    for key in args.leads:
        found = await leads.find(conn, key)
        if not found:
            raise Failed(f"no lead {key!r}")
        ids += found
    done = await actions.act(conn, actions.Action(args.action), ids, actor=ACTOR, now=utcnow())
    lines = [
        f"lead {o.lead_id}: {args.action} {'done' if o.changed else 'not possible'}"
        f" (was {o.status_before}){': ' + o.why if o.why else ''}"
        for o in done
    ]
    _print(args, [asdict(o) for o in done], "\n".join(lines))
    changed = sum(o.changed for o in done)
    if changed == 0:
        raise Failed(f"no lead could {args.action}")
    if changed < len(done):
        raise Partly(f"{len(done) - changed} of {len(done)} leads could not {args.action}")


async def _sequence(conn: Conn, args: argparse.Namespace) -> None:
    if args.action not in ("pause", "resume"):
        await define.sequence(conn, args, _print)
        return
    status = "paused" if args.action == "pause" else "active"
    try:
        changed = await sequences.set_status(conn, args.name, status, actor=ACTOR, now=utcnow())
    except leads.NotFound as exc:
        raise Failed(str(exc)) from None
    print(f"sequence {args.name!r}: {status}" + ("" if changed else " already"))


async def _dead_letters(conn: Conn, args: argparse.Namespace) -> None:
    settings = load_or_exit(BrokerSettings)
    url, names = settings.amqp_url, Names.from_prefix(settings.amqp_prefix)
    if args.action in ("list", "show"):
        letters = await dead_letters.listing(
            conn, url, names, limit=args.limit if args.action == "list" else 100_000, now=utcnow()
        )
        if args.action == "show":
            letters = [d for d in letters if d.outbox_id in args.ids]
            if not letters:
                raise Failed(f"no dead letter {' '.join(args.ids)}")
        _print(
            args,
            [asdict(d) for d in letters],
            "\n".join(
                f"{d.outbox_id}\tlead {d.lead_id}\t{round(d.age_seconds or 0)} s ago\t{d.reason}"
                + (f"\n  {d.body}" if args.action == "show" else "")
                for d in letters
            ),
        )
        return
    if args.action == "replay":
        done = await dead_letters.replay(url, names, args.ids, args.limit if not args.ids else None)
    elif not args.ids and not args.all:
        raise Failed("purge needs the ids to drop, or --all")
    else:
        done = await dead_letters.purge(url, names, args.ids)
    _print(args, done, f"{args.action}: {len(done)} dead letter(s) {' '.join(done)}".rstrip())
    if args.ids and len(done) < len(set(args.ids)):
        raise Partly(f"{len(set(args.ids)) - len(done)} of the ids are not dead letters")


def _when(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _status_text(view: status.Overview) -> str:
    lines = ["SEQUENCES"]
    for q in view.sequences:
        counts = ", ".join(f"{k} {v}" for k, v in q.leads.items() if v)
        day = ", ".join(f"{k} {v}" for k, v in q.last_24h.items() if v)
        lines.append(f"  {q.id} {q.name!r} [{q.status}]: {counts or 'no leads'}")
        lines.append(f"      last 24 h: {day or 'nothing'}")
    lines.append("SENDERS")
    for s in view.senders:
        caps = f"{s.sent_last_hour}/{s.hourly_limit or '-'} this hour, "
        caps += f"{s.sent_last_day}/{s.daily_limit or '-'} today"
        free = f", next free slot {s.next_free_slot:%H:%M:%S}" if s.next_free_slot else ""
        lines.append(f"  {s.id} {s.email}: {caps}{free}" + ("" if s.paced else " (unpaced)"))
        if s.status == "paused":
            probe = f", probe at {s.probe_at:%H:%M:%S}" if s.probe_at else ", resume by hand"
            lines.append(f"      PAUSED by the guard: {s.paused_reason}{probe}")
        for provider, held_to in sorted(s.backoffs.items()):
            lines.append(f"      backing off at {provider} until {held_to:%H:%M:%S} (it asked)")
        if s.provider_caps:
            at = ", ".join(
                f"{p} {s.provider_day.get(p, 0)}/{cap}"
                for p, cap in sorted(s.provider_caps.items())
            )
            lines.append(f"      today at providers: {at}")
        if s.daily_target is not None and s.daily_limit != s.daily_target:
            lines.append(f"      warm-up: {s.daily_limit} a day now, growing to {s.daily_target}")
        if s.circuit != "closed":
            until = f" until {s.circuit_retry_at:%H:%M:%S}" if s.circuit_retry_at else ""
            lines.append(f"      SMTP circuit {s.circuit}{until} ({s.account}): {s.circuit_reason}")
    p = view.pipeline
    unknown = "unknown (broker not reachable)"
    lines += [
        "PIPELINE",
        f"  due now {p.due}{'+' if p.due_capped else ''}"
        + (f", oldest waiting {_when(p.lag_seconds)}" if p.due else ""),
        f"  queued {p.queued}, outbox unpublished {p.outbox_unpublished}"
        + (f" (oldest {_when(p.outbox_oldest_seconds)})" if p.outbox_unpublished else ""),
        f"  send queue {unknown if p.queue_messages is None else p.queue_messages},"
        f" dead letters {unknown if p.dead_letters is None else p.dead_letters}",
        "  replicas: " + (", ".join(
            f"{r.service}@{r.host}:{r.pid} ({_when((view.at - r.last_progress).total_seconds())}"
            " since progress)" for r in p.replicas) or "none reporting"),
        "EVENTS",
        f"  kept since {view.events_kept_since:%Y-%m-%d} (older months dropped)"
        if view.events_kept_since else "  all kept",
    ]  # fmt: skip
    return "\n".join(lines)


async def _status(conn: Conn, args: argparse.Namespace) -> None:
    settings = load_or_exit(BrokerSettings)
    depths = status.QueueDepths(settings.amqp_url, Names.from_prefix(settings.amqp_prefix))
    try:
        view = await status.read(conn, depths, utcnow())
    finally:
        await depths.close()
    _print(args, asdict(view), _status_text(view))


class _Progress:
    """A progress line on a terminal: how far into the file, rows per second, the time left
    at that rate, and the counts so far."""

    def __init__(self, raw: Any, size: int) -> None:
        self.raw, self.size = raw, max(size, 1)
        self.on = sys.stderr.isatty()
        self.started = time.monotonic()

    def __call__(self, report: imports.Report) -> None:
        if self.on:
            share = min(self.raw.tell() / self.size, 1.0)
            bar = "#" * int(share * 30)
            spent = max(time.monotonic() - self.started, 1e-6)
            left = spent * (1 - share) / share if share > 0 else 0.0
            print(f"\r[{bar:<30}] {share:4.0%} {report.rows / spent:,.0f} rows/s,"
                  f" {left:,.0f} s left  {report.line()}", end="", file=sys.stderr)  # fmt: skip

    def done(self) -> None:
        if self.on:
            print(file=sys.stderr)


async def _import(conn: Conn, args: argparse.Namespace) -> None:
    path = Path(args.file)
    kind = args.format or ("jsonl" if path.suffix in (".jsonl", ".ndjson") else "csv")
    rejected_path = path.with_name(path.name + ".rejected.csv")
    # A command, not a server: reading the file blocks nothing else.
    with (
        path.open("rb") as raw,  # noqa: ASYNC230
        rejected_path.open("w", newline="", encoding="utf-8") as out,
    ):
        try:
            text = imports.text_of(raw)
        except imports.Unreadable as exc:
            rejected_path.unlink()
            raise Failed(f"{path}: {exc}; nothing imported") from None
        progress = _Progress(raw, path.stat().st_size)  # noqa: ASYNC240
        try:
            report = await imports.import_leads(
                conn,
                args.sequence,
                imports.records(text, kind),
                sender=args.sender,
                on_duplicate=args.on_duplicate,
                dry_run=args.dry_run,
                rejects=imports.RejectFile(out),
                progress=progress,
            )
        except (leads.NotFound, imports.Unreadable) as exc:
            rejected_path.unlink()
            raise Failed(f"{exc}; nothing imported") from None
        finally:
            progress.done()
    if report.rejected == 0:
        rejected_path.unlink()
    _print(args, asdict(report), report.line())
    if report.rejected:
        raise Partly(f"{report.rejected} row(s) rejected: see {rejected_path}")


def _limit(text: str) -> int | None:
    """A limit on the command line: a whole number, or `none` for unlimited."""
    if text.lower() in ("none", "unlimited"):
        return None
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"not a whole number nor 'none': {text!r}")
    return int(text)


def _limits(args: argparse.Namespace) -> dict[str, int | None]:
    flags = {
        "hourly_limit": args.hourly,
        "daily_limit": args.daily,
        "daily_new_limit": args.daily_new,
        "min_gap_seconds": args.min_gap,
        "jitter_seconds": args.jitter,
    }
    return {k: v for k, v in flags.items() if v is not _UNSET}


async def _sender(conn: Conn, args: argparse.Namespace) -> None:
    if args.action == "check":
        await _sender_check(conn, args)
        return
    if args.action == "resume":
        try:
            resumed = await senders.resume(conn, args.email, actor=ACTOR, now=utcnow())
        except leads.NotFound as exc:
            raise Failed(str(exc)) from None
        if not resumed:
            raise Failed(f"sender {args.email} is not paused")
        _print(args, {"email": args.email, "resumed": True}, f"sender {args.email}: resumed")
        return
    if args.action in ("create", "list"):
        await define.sender(conn, args, _print, _limits(args) if args.action == "create" else {})
        return
    given = _limits(args)
    accounts = {}
    for kind in ("smtp", "imap"):
        url, secret = getattr(args, f"{kind}_url"), getattr(args, f"{kind}_password_file")
        if url is not None:
            accounts[f"{kind}_url"] = None if url.lower() == "none" else url
            if url.lower() == "none":
                accounts[f"{kind}_password"] = None
        if secret is not None:
            accounts[f"{kind}_password"] = _password(secret)
    try:
        if args.name is not _UNSET:
            found = await conn.fetchval(
                "SELECT id FROM senders WHERE lower(email) = lower($1)", args.email
            )
            if found is None:
                raise Failed(f"no sender {args.email!r}")
            name = None if args.name.lower() == "none" else args.name
            await definitions.rename_sender(conn, found, name)
            print(f"sender {args.email}: name {name!r}")
        if accounts:
            key = load_or_exit(CommonSettings).credentials_key.get_secret_value()
            changed = await senders.set_accounts(
                conn, args.email, **accounts, box=Box(key) if key else None, actor=ACTOR,
                now=utcnow(),
            )  # fmt: skip
            print(f"sender {args.email}: {', '.join(changed)} set")
        guard_given = {k: v for k, v in _guard_flags(args).items() if v is not _UNSET}
        if guard_given:
            done = await senders.set_guard(conn, args.email, guard_given, actor=ACTOR, now=utcnow())
            print(f"sender {args.email}: {done.changes}; {done.replanned} waiting lead(s) planned")
        if given or not (accounts or guard_given or args.name is not _UNSET):
            done = await senders.set_limits(conn, args.email, given, actor=ACTOR, now=utcnow())
            _print(
                args,
                asdict(done),
                f"sender {args.email}: {done.changes or 'no change'};"
                f" {done.replanned} waiting lead(s) planned again",
            )
    except (leads.NotFound, senders.InvalidLimit, definitions.Invalid) as exc:
        raise Failed(str(exc)) from None


async def _sender_check(conn: Conn, args: argparse.Namespace) -> None:
    settings = load_or_exit(PreflightSettings)
    row = await conn.fetchrow(
        "SELECT email, smtp_url FROM senders WHERE lower(email) = lower($1)", args.email
    )
    if row is None:
        raise Failed(f"no sender {args.email!r}")
    host = settings.smtp_host
    if row["smtp_url"]:
        host = URL(row["smtp_url"]).host or host
    sender = preflight.Sender(
        email=row["email"], sending_host=host,
        ehlo_name=settings.smtp_local_hostname or preflight.default_ehlo(),
        dkim_keys_dir=settings.dkim_keys_dir,
    )  # fmt: skip
    findings = await preflight.check(resolver(settings.dns_nameservers), sender)
    _print(args, [asdict(f) for f in findings], "\n".join(f.line() for f in findings))
    bad = [f for f in findings if not f.ok]
    if bad:
        raise Failed(f"{len(bad)} of {len(findings)} checks to fix")


def _guard_flags(args: argparse.Namespace) -> dict[str, Any]:
    warmup = args.warmup
    start = increment = _UNSET
    if warmup is not _UNSET:
        start, increment = warmup if warmup is not None else (None, None)
    caps: Any = _UNSET
    if args.provider_cap:
        caps = dict(args.provider_cap)
    return {
        "provider_caps": caps,
        "guard_hard_bounce_rate": args.guard_hard_bounce_rate,
        "guard_complaint_rate": args.guard_complaint_rate,
        "guard_block_rate": args.guard_block_rate,
        "guard_min_sample": args.guard_min_sample,
        "warmup_start": start,
        "warmup_increment": increment,
    }


def _rate(text: str) -> float | None:
    """A guard threshold: a fraction (0.05), a percentage (5%), or `none` (the default)."""
    if text.lower() == "none":
        return None
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a rate like 0.05 or 5%, or 'none': {text!r}") from None
    return value


def _role(text: str) -> Role:
    try:
        return Role.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _provider_cap(text: str) -> tuple[str, int | None]:
    """PROVIDER=N (hand-offs in any 24 hours), or PROVIDER=none."""
    provider, _, cap = text.partition("=")
    provider = provider.strip().lower()
    if provider not in senders.PROVIDERS:
        raise argparse.ArgumentTypeError(
            f"PROVIDER=N with a provider of {', '.join(senders.PROVIDERS)}: {text!r}"
        )
    return provider, _limit(cap.strip())


def _warmup(text: str) -> tuple[int, int] | None:
    """START,INCREMENT (a day), or `none`."""
    if text.lower() == "none":
        return None
    start, _, inc = text.partition(",")
    if not (start.isascii() and start.isdigit() and inc.isascii() and inc.isdigit()):
        raise argparse.ArgumentTypeError(f"START,INCREMENT like 20,10, or 'none': {text!r}")
    return int(start), int(inc)


def _password(path: str) -> str:
    """A password from a file (its first line): never on the command line, where other
    users of the host see it."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError) as exc:
        raise Failed(f"no password in {path}: {exc}") from None


_UNSET: Any = object()


async def _suppress(conn: Conn, args: argparse.Namespace) -> None:
    try:
        if args.action == "list":
            rows = await suppressions.listing(conn, limit=args.limit)
            _print(
                args,
                [asdict(r) for r in rows],
                "\n".join(f"{r.email}\t{r.reason}\t{r.created_at:%Y-%m-%d}" for r in rows),
            )
        elif args.entry is None:
            raise Failed(f"suppress {args.action} needs an ADDRESS or *@DOMAIN")
        elif args.action == "add":
            added, stopped = await suppressions.add(conn, args.entry)
            print(
                f"{args.entry}: {'suppressed' if added else 'already suppressed'},"
                f" {stopped} lead(s) stopped"
            )
        elif await suppressions.remove(conn, args.entry, actor=ACTOR, now=utcnow()):
            print(f"{args.entry}: no longer suppressed")
        else:
            raise Failed(f"{args.entry} was not suppressed")
    except suppressions.InvalidEntry as exc:
        raise Failed(str(exc)) from None


async def _token(conn: Conn, args: argparse.Namespace) -> None:
    if args.action == "create":
        try:
            token = await tokens.create(conn, args.name, args.role)
        except (tokens.TokenExists, ValueError) as exc:
            raise Failed(str(exc)) from None
        print(token)
        print(
            f"token {args.name!r} ({args.role}) created; shown this once, keep it safe",
            file=sys.stderr,
        )
    elif args.action == "revoke":
        if not await tokens.revoke(conn, args.name, utcnow()):
            raise Failed(f"no live token named {args.name!r}")
        print(f"token {args.name!r} revoked")
    else:
        rows = await tokens.listing(conn)
        _print(
            args,
            [asdict(r) for r in rows],
            "\n".join(
                f"{r.name}\t{r.role}\tcreated {r.created_at:%Y-%m-%d}\t"
                + (f"revoked {r.revoked_at:%Y-%m-%d}" if r.revoked_at else "live")
                for r in rows
            ),
        )


async def _person(conn: Conn, args: argparse.Namespace) -> None:
    try:
        done = await people.erase(conn, args.email, actor=ACTOR, door="cli", now=utcnow())
    except errors.Invalid as exc:
        raise Failed(str(exc)) from None
    _print(
        args, asdict(done),
        f"erased: {done.leads} lead(s) ({done.stopped} stopped); the address is kept only as"
        f" sha256:{done.address_sha256}, suppressed",
    )  # fmt: skip


async def _webhook(conn: Conn, args: argparse.Namespace) -> None:
    allow_private = load_or_exit(WebhookSettings).webhook_allow_private
    try:
        await _webhook_action(conn, args, allow_private)
    except (errors.NotFound, errors.Invalid) as exc:
        raise Failed(str(exc)) from None


async def _webhook_action(conn: Conn, args: argparse.Namespace, allow_private: bool) -> None:
    now = utcnow()
    if args.action == "add":
        types = [t.strip() for t in args.events.split(",") if t.strip()]
        added = await webhooks.add(
            conn, args.url, types, args.description, allow_private=allow_private, now=now
        )
        _print(args, asdict(added), f"{added.id}\t{added.url}\t{','.join(added.event_types)}")
        if not args.json:
            print(added.secret)
            print("the signing secret above is shown this once; keep it safe", file=sys.stderr)
    elif args.action == "list":
        rows = await webhooks.endpoints(conn)
        _print(args, rows, "\n".join(
            f"{r['id']}\t{r['url']}\t{','.join(r['event_types'])}\t"
            f"pending {r['pending']}, failed {r['failed']}"
            + (f"\t{r['description']}" if r["description"] else "")
            for r in rows
        ) or "no webhook endpoints")  # fmt: skip
    elif args.action == "remove":
        await webhooks.remove(conn, args.id)
        print(f"webhook endpoint {args.id} removed")
    elif args.action == "test":
        delivery = await webhooks.test(conn, args.id, now)
        _print(args, {"delivery_id": delivery}, f"test message queued (delivery {delivery})")
    elif args.action == "failed":
        rows = await webhooks.deliveries(conn, args.id, "failed", limit=args.limit)
        _print(args, rows, "\n".join(
            f"{r['id']}\t{r['event_type']}\tevent {r['event_id']}\t{r['attempts']} tries\t"
            f"{r['last_error'] or ''}"
            for r in rows
        ) or "no failed deliveries")  # fmt: skip
    else:  # replay
        ids = await webhooks.replay(conn, now, endpoint_id=args.id)
        _print(args, {"replayed": ids}, f"{len(ids)} failed deliveries due again")


def _dkim(args: argparse.Namespace) -> int:
    directory = Path(os.environ.get("DKIM_KEYS_DIR", ""))
    if not str(directory) or str(directory) == ".":
        print("ops dkim: set DKIM_KEYS_DIR (the worker's key directory)", file=sys.stderr)
        return 2
    try:
        if args.action == "create":
            if not args.domain or not args.selector:
                print("usage: python -m ops dkim create DOMAIN SELECTOR", file=sys.stderr)
                return 2
            found = [dkim.create(directory, args.domain, args.selector, algorithm=args.algorithm)]
        else:
            found = dkim.records(directory)
    except (dkim.KeyExists, core_dkim.InvalidKey, OSError) as exc:
        print(f"ops dkim: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a domain or selector that is not a DNS name
        print(f"ops dkim: {exc}", file=sys.stderr)
        return 2
    _print(
        args,
        [asdict(k) for k in found],
        # DNS strings hold 255 characters: a long record is published as several, joined.
        "\n".join(
            f"{k.name} IN TXT "
            + " ".join(f'"{k.record[i : i + 255]}"' for i in range(0, len(k.record), 255))
            + f"  ; {k.algorithm}"
            for k in found
        ),
    )
    return 0


def _parser(prog: str = "python -m ops") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {health.version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print data (and errors) as JSON")
    common.add_argument(
        "--wait", type=float, default=10.0, metavar="SECONDS",
        help="give up (exit 1) when the database or broker cannot be reached within this long",
    )  # fmt: skip

    def group(name: str, help: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        g = sub.add_parser(name, help=help, description=help)
        return g.add_subparsers(dest="action", required=True, metavar="ACTION")

    def cmd(
        where: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        help: str,
    ) -> argparse.ArgumentParser:
        return where.add_parser(name, help=help, description=help, parents=[common])

    lead = group("lead", "show a lead, or retry, stop, pause or resume leads")
    cmd(lead, "show", "a lead with its deliveries and timeline").add_argument(
        "leads", nargs=1, metavar="ID|EMAIL"
    )
    for a, what in (
        ("retry", "make a failed lead's failed step sendable again"),
        ("stop", "stop leads (reason operator)"),
        ("pause", "pause leads (nothing is sent to them)"),
        ("resume", "resume paused leads"),
    ):
        cmd(lead, a, what).add_argument("leads", nargs="+", metavar="ID|EMAIL")
    seq = group("sequence", "create, change, list, show, pause or resume sequences")
    for a in ("pause", "resume"):
        cmd(seq, a, f"{a} a sequence by its name").add_argument("name")
    define.add_sequence_parsers(cmd, seq)
    define.add_step_parsers(cmd, group("step", "set or list the steps of a sequence"))
    sup = group("suppress", "add, remove or list suppressions")
    cmd(sup, "add", "suppress an address or a whole *@DOMAIN (its leads stop)").add_argument(
        "entry", metavar="ADDRESS|*@DOMAIN"
    )
    cmd(sup, "remove", "lift a suppression (logged)").add_argument(
        "entry", metavar="ADDRESS|*@DOMAIN"
    )
    listing = cmd(sup, "list", "the suppressions in address order")
    listing.add_argument("--limit", type=int, default=1000)
    listing.set_defaults(entry=None)
    tok = group("token", "create, revoke or list API tokens")
    made = cmd(tok, "create", "a bearer token, printed once (stored hashed)")
    made.add_argument("name")
    made.add_argument(
        "--role",
        type=_role,
        default=Role.OPERATOR,
        help="viewer (reads), operator (leads, sequences, imports, inbox; the default) or "
        "admin (also senders, tokens, webhooks, erasure, the audit trail)",
    )
    cmd(tok, "revoke", "revoke a token by its name").add_argument("name")
    cmd(tok, "list", "the tokens, without their secrets")
    per = group("person", "a person's data: erase it on request")
    cmd(
        per, "erase",
        "remove every personal field of the address's leads, their replies and events' data;"
        " keep it suppressed as a SHA-256",
    ).add_argument("email")  # fmt: skip
    wh = group("webhook", "endpoints that receive events as signed POSTs (Standard Webhooks)")
    wadd = cmd(wh, "add", "subscribe a URL to event types; prints its signing secret once")
    wadd.add_argument("url")
    wadd.add_argument(
        "--events", required=True, metavar="TYPE,...",
        help=f"event types, comma-separated: {', '.join(core_webhooks.EVENT_TYPES)}",
    )  # fmt: skip
    wadd.add_argument("--description", default="")
    cmd(wh, "list", "the endpoints, with their pending and failed deliveries")
    cmd(wh, "remove", "remove an endpoint and its deliveries").add_argument("id", type=int)
    cmd(wh, "test", "send the endpoint a webhook.test message").add_argument("id", type=int)
    wfail = cmd(wh, "failed", "an endpoint's deliveries given up on")
    wfail.add_argument("id", type=int)
    wfail.add_argument("--limit", type=int, default=100)
    cmd(wh, "replay", "try an endpoint's failed deliveries again").add_argument("id", type=int)
    imp = sub.add_parser(
        "import", parents=[common], help="import leads from CSV or JSON Lines into a sequence",
        description="import leads from CSV or JSON Lines into a sequence",
    )  # fmt: skip
    imp.add_argument("file")
    imp.add_argument("--sequence", required=True, help="the sequence's name")
    imp.add_argument("--sender", help="the sender of every imported lead (else assigned)")
    imp.add_argument("--dry-run", action="store_true", help="check everything, store nothing")
    imp.add_argument("--on-duplicate", choices=["skip", "update"], default="skip")
    imp.add_argument("--format", choices=["csv", "jsonl"], help="default: by the file name")
    dl = group("dead-letters", "list, show, replay or purge dead-lettered messages")
    cmd(dl, "list", "the dead letters").add_argument("--limit", type=int, default=100)
    cmd(dl, "show", "dead letters in full").add_argument("ids", nargs="+", metavar="OUTBOX_ID")
    replay = cmd(dl, "replay", "publish dead letters again (the ids given, or the first --limit)")
    replay.add_argument("ids", nargs="*", metavar="OUTBOX_ID")
    replay.add_argument("--limit", type=int, default=100)
    purge = cmd(dl, "purge", "drop dead letters")
    purge.add_argument("ids", nargs="*", metavar="OUTBOX_ID")
    purge.add_argument("--all", action="store_true", help="every dead letter")
    snd = group("sender", "create, change or list senders")

    def limit_flags(where: argparse.ArgumentParser) -> None:
        for flag, what in (
            ("--hourly", "hand-offs in any 60 minutes"),
            ("--daily", "hand-offs in any 24 hours"),
            ("--daily-new", "first touches in any 24 hours"),
            ("--min-gap", "seconds between two hand-offs"),
            ("--jitter", "up to this many seconds more, at random"),
        ):
            where.add_argument(flag, type=_limit, default=_UNSET, help=f"{what} ('none': no cap)")

    define.add_sender_parsers(cmd, snd, limit_flags)
    sset = cmd(
        snd, "set", "set a sender's name, limits and accounts (its waiting leads are planned again)"
    )
    sset.add_argument("email")
    sset.add_argument("--name", default=_UNSET, help="the display name in From ('none': none)")
    limit_flags(sset)
    for rate in ("hard-bounce", "complaint", "block"):
        sset.add_argument(
            f"--guard-{rate}-rate", type=_rate, default=_UNSET,
            help=f"pause the sender above this {rate} rate, e.g. 5% ('none': the GUARD_ setting)",
        )  # fmt: skip
    sset.add_argument(
        "--guard-min-sample", type=_limit, default=_UNSET,
        help="hand-offs before the rates are judged ('none': GUARD_MIN_SAMPLE)",
    )  # fmt: skip
    sset.add_argument(
        "--warmup", type=_warmup, default=_UNSET, metavar="START,INCREMENT",
        help="ramp the daily cap: START a day, INCREMENT more each day, up to --daily ('none')",
    )  # fmt: skip
    sset.add_argument(
        "--provider-cap", type=_provider_cap, action="append", metavar="PROVIDER=N",
        help="at most N hand-offs in any 24 hours to one recipient provider"
        f" ({', '.join(senders.PROVIDERS)}; N 'none': no cap); repeatable",
    )  # fmt: skip
    cmd(snd, "resume", "resume a sender the reputation guard paused").add_argument("email")
    cmd(
        snd, "check",
        "pre-flight: SPF, DKIM, DMARC, MX and the EHLO name in DNS, each finding a line",
    ).add_argument("email")  # fmt: skip
    for kind in ("smtp", "imap"):
        sset.add_argument(f"--{kind}-url", help=f"the sender's own {kind.upper()} account ('none')")
        sset.add_argument(f"--{kind}-password-file", help="a file whose first line is the password")
    sub.add_parser(
        "status", parents=[common], help="sequences, senders and the pipeline at a glance",
        description="sequences, senders and the pipeline at a glance",
    )  # fmt: skip
    dk = group("dkim", "make a DKIM key, or show the DNS records of the keys")
    dkc = cmd(dk, "create", "a key for DOMAIN under SELECTOR in DKIM_KEYS_DIR; prints its record")
    dkc.add_argument("domain")
    dkc.add_argument("selector")
    dkc.add_argument("--algorithm", choices=["rsa", "ed25519"], default="rsa")
    cmd(dk, "records", "the DNS records of the keys in use")
    comp = sub.add_parser(
        "completion", help="print a shell completion script (bash, zsh or tcsh)",
        description="print a completion script: `eval \"$(email-scheduler completion bash)\"`"
                    " in ~/.bashrc, or save it in /etc/bash_completion.d/",
    )  # fmt: skip
    comp.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    hl = sub.add_parser(
        "health", help="is this host's replica of a service alive and making progress?",
        description="exit 0 when this host's replicas of SERVICE made progress lately, else 1",
    )  # fmt: skip
    hl.add_argument("--service", choices=SERVICES, required=True)
    return p


COMMANDS: dict[str, Callable[[Conn, argparse.Namespace], Awaitable[None]]] = {
    "dead-letters": _dead_letters,
    "import": _import,
    "person": _person,
    "sender": _sender,
    "sequence": _sequence,
    "status": _status,
    "step": lambda conn, args: define.step(conn, args, _print),
    "suppress": _suppress,
    "token": _token,
    "webhook": _webhook,
}


class Unreachable(Exception):
    """The database did not answer within --wait (exit 1)."""


def _os_user() -> str:
    """Who runs the command, for the audit trail: the account and the host."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = f"uid {os.getuid()}"
    return f"{name}@{socket.gethostname()}"


async def _run(dsn: str, args: argparse.Namespace) -> None:
    wait = getattr(args, "wait", 10.0)
    try:
        pool = await asyncio.wait_for(create_pool(dsn, max_size=1, setup=audit.on_acquire), wait)
        audit.acting(_os_user(), "cli")
    except TimeoutError:
        where = dsn.rpartition("@")[2] or dsn
        raise Unreachable(f"the database at {where} could not be reached within {wait:g} s"
                          " (--wait SECONDS to wait longer)") from None  # fmt: skip
    try:
        await check_schema(pool, latest_version())
        async with pool.acquire() as conn:
            if args.command == "lead":
                await (_lead_show if args.action == "show" else _lead_act)(conn, args)
            else:
                await COMMANDS[args.command](conn, args)
    finally:
        await pool.close()


def main(argv: list[str], prog: str = "python -m ops") -> int:
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.command == "completion":
        # Completion of the commands, their flags and choices (shtab, from this parser).
        print(shtab.complete(parser, shell=args.shell, root_prefix=prog.replace(" ", "_")))
        return 0
    if args.command == "health":
        return health.main(args.service)
    if args.command == "dkim":
        return _dkim(args)
    if args.command == "import" and not Path(args.file).is_file():
        print(f"ops import: no file {args.file}", file=sys.stderr)
        return 2
    settings = load_or_exit(CommonSettings)
    logs.configure("ops", "WARNING", settings.log_format, stream=sys.stderr)
    try:
        asyncio.run(_run(settings.database_url, args))
    except (Failed, define.Refused) as exc:
        return _error(args, str(exc), 1)
    except Partly as exc:
        return _error(args, str(exc), 3)
    except StartupError as exc:
        return _error(args, str(exc), 2)
    except Unreachable as exc:
        return _error(args, str(exc), 1)
    except Exception as exc:  # one line, not a traceback
        return _error(args, f"{type(exc).__name__}: {exc}", 1)
    return 0


def _error(args: argparse.Namespace, message: str, code: int) -> int:
    """One line on stderr (and, with --json, a JSON object on stdout unless the command's data
    went there already: one JSON document either way); the exit status."""
    print(f"ops {args.command}: {message}", file=sys.stderr)
    if getattr(args, "json", False) and not getattr(args, "printed", False):
        print(json.dumps({"error": message, "exit": code}))
    return code


def cli() -> None:
    """The installed command (`email-scheduler`, pyproject's [project.scripts])."""
    raise SystemExit(main(sys.argv[1:], prog=Path(sys.argv[0]).name))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
