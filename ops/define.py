"""`python -m ops sender|sequence|step ...`: creating, changing and listing senders, sequences
and steps from the command line, through the use cases the REST API calls
(`ops/definitions.py`, `ops/senders.py`): the same checks, the same answers."""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict
from datetime import time
from pathlib import Path
from typing import Any

from ops import definitions
from ops.errors import Conflict, Invalid, NotFound
from ops.senders import InvalidLimit

_DURATION = re.compile(r"^(\d{1,9})([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_WINDOW = re.compile(r"^(\d{1,2}:\d{2})-(\d{1,2}:\d{2})$")


class Refused(Exception):
    """What the use case refused, in its words (exit 1)."""


def duration(text: str) -> int:
    """Seconds from `90`, `90s`, `15m`, `2h` or `3d`."""
    m = _DURATION.match(text.strip().lower())
    if m is None or not text.isascii():
        raise argparse.ArgumentTypeError(f"not a duration like 90, 15m, 2h or 3d: {text!r}")
    return int(m[1]) * _UNITS[m[2]]


def window(text: str) -> tuple[time, time | None]:
    """A sending window `HH:MM-HH:MM` (the end may be 24:00: the end of the day)."""
    m = _WINDOW.match(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"not a window like 09:00-17:30: {text!r}")
    try:
        start = time.fromisoformat(m[1].zfill(5))
        end = None if m[2] == "24:00" else time.fromisoformat(m[2].zfill(5))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a window like 09:00-17:30: {text!r}") from None
    return start, end


def days(text: str) -> list[int]:
    """ISO weekdays: `1-5`, `1,3,5` or `6,7`."""
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        if not (lo.isascii() and lo.isdigit() and (not hi or (hi.isascii() and hi.isdigit()))):
            raise argparse.ArgumentTypeError(f"weekdays like 1-5 or 1,3,5: {text!r}")
        out.update(range(int(lo), int(hi or lo) + 1))
    if not out or not out <= set(range(1, 8)):
        raise argparse.ArgumentTypeError(f"weekdays are 1 (Monday) to 7 (Sunday): {text!r}")
    return sorted(out)


def yes_no(text: str) -> bool:
    if text.lower() in ("yes", "true", "on", "1"):
        return True
    if text.lower() in ("no", "false", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"yes or no: {text!r}")


def _text(inline: str | None, path: str | None, what: str) -> str | None:
    if path is None:
        return inline
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Refused(f"{what}: cannot read {path}: {exc}") from None


def add_sequence_parsers(cmd: Any, seq: Any) -> None:
    """`sequence create|update|list|show` beside pause and resume."""
    for action in ("create", "update"):
        what = "a new sequence" if action == "create" else "change a sequence (given fields only)"
        p = cmd(seq, action, what)
        p.add_argument(
            "name", help="the sequence's name" + (" (or id)" if action == "update" else "")
        )
        if action == "update":
            p.add_argument("--rename", metavar="NEW_NAME", help="a new name")
        p.add_argument("--timezone", help="the window's timezone (tz database name)")
        p.add_argument("--days", type=days, help="sending weekdays, e.g. 1-5")
        p.add_argument("--window", type=window, help="sending hours, e.g. 09:00-17:30")
        p.add_argument(
            "--stop-on-company-reply", type=yes_no, metavar="yes|no",
            help="a reply from anyone at the lead's domain stops the lead",
        )  # fmt: skip
        p.add_argument(
            "--sender", action="append", dest="senders", metavar="EMAIL",
            help="a sender of the sequence (repeat for several; replaces the list)",
        )  # fmt: skip
    cmd(seq, "list", "the sequences")
    cmd(seq, "show", "a sequence with its steps").add_argument("name", help="name or id")


def add_step_parsers(cmd: Any, step: Any) -> None:
    put = cmd(step, "set", "create or replace the step at POSITION of a sequence")
    put.add_argument("sequence", help="the sequence's name or id")
    put.add_argument("position", type=int)
    body = put.add_mutually_exclusive_group(required=True)
    body.add_argument("--body", help="the plain-text body (a template)")
    body.add_argument("--body-file", help="a file with the plain-text body")
    subject = put.add_mutually_exclusive_group(required=True)
    subject.add_argument("--subject", help="the subject (a template)")
    subject.add_argument(
        "--reply", action="store_true", help="no subject: sent as a reply in the lead's thread"
    )
    put.add_argument("--html-file", help="a file with an HTML body (a template)")
    put.add_argument(
        "--after", type=duration, default=0, help="wait after the previous step: 90, 15m, 2h or 3d"
    )
    cmd(step, "list", "the steps of a sequence").add_argument("sequence", help="name or id")


def add_sender_parsers(cmd: Any, snd: Any, limit_flags: Any) -> None:
    create = cmd(snd, "create", "a new sender (a mailbox the sequences send from)")
    create.add_argument("email")
    create.add_argument("--name", help="the display name in From")
    limit_flags(create)
    cmd(snd, "list", "the senders with their limits")


async def sequence_key(conn: Any, key: str) -> int:
    """The id of the sequence called `key` (or, failing that, with id `key`)."""
    found = await conn.fetchval(
        "SELECT id FROM sequences WHERE name = $1 OR id = $2 ORDER BY name = $1 DESC, id LIMIT 1",
        key,
        int(key) if key.isascii() and key.isdigit() and len(key) < 19 else None,
    )
    if found is None:
        raise Refused(f"no sequence {key!r}")
    return int(found)


def _sequence_line(s: dict[str, Any]) -> str:
    start, end = s["send_from"], s["send_until"]
    hours = f"{start or '00:00'}-{end or '24:00'}" if start or end else "any hour"
    weekdays = ",".join(map(str, s["send_days"])) if s["send_days"] else "every day"
    return (
        f"{s['id']}\t{s['name']}\t{s['status']}\t{s['timezone']}\t{weekdays}\t{hours}"
        f"\tsenders {','.join(map(str, s['sender_ids'])) or 'any'}"
    )


async def sequence(conn: Any, args: argparse.Namespace, show: Any) -> None:
    """create, update, list, show."""
    try:
        if args.action == "list":
            items = await definitions.sequences(conn, limit=10_000)
            show(args, items, "\n".join(_sequence_line(s) for s in items))
            return
        if args.action == "show":
            seq = await definitions.sequence(conn, await sequence_key(conn, args.name))
            steps = await definitions.steps(conn, seq["id"])
            lines = [_sequence_line(seq)] + [_step_line(s) for s in steps]
            show(args, {**seq, "steps": steps}, "\n".join(lines))
            return
        fields: dict[str, Any] = {
            "timezone": args.timezone,
            "send_days": args.days,
            "stop_on_company_reply": args.stop_on_company_reply,
            "senders": args.senders,
        }
        if args.window is not None:
            fields["send_from"], fields["send_until"] = args.window
        given = {k: v for k, v in fields.items() if v is not None}
        if args.action == "create":
            seq_id = await definitions.create_sequence(
                conn, definitions.SequenceSpec(name=args.name, **given)
            )
        else:
            seq_id = await sequence_key(conn, args.name)
            if args.rename is not None:
                given["name"] = args.rename
            if not given:
                raise Refused("nothing to change: give --rename, --timezone, --days, ...")
            await definitions.update_sequence(conn, seq_id, given)
        seq = await definitions.sequence(conn, seq_id)
        show(args, seq, f"sequence {seq['name']!r} ({seq_id}): {args.action}d")
    except (Invalid, NotFound, Conflict) as exc:
        raise Refused(str(exc)) from None


def _step_line(s: dict[str, Any]) -> str:
    subject = repr(s["subject"]) if s["subject"] is not None else "(a reply in the thread)"
    return f"  step {s['position']}\tafter {s['wait_seconds']} s\t{subject}"


async def step(conn: Any, args: argparse.Namespace, show: Any) -> None:
    """set, list."""
    try:
        seq_id = await sequence_key(conn, args.sequence)
        if args.action == "list":
            steps = await definitions.steps(conn, seq_id)
            show(args, steps, "\n".join(_step_line(s) for s in steps))
            return
        body = _text(args.body, args.body_file, "--body-file")
        spec = definitions.StepSpec(
            position=args.position,
            body_text=body or "",
            subject=None if args.reply else args.subject,
            body_html=_text(None, args.html_file, "--html-file"),
            wait_seconds=args.after,
        )
        step_id = await definitions.put_step(conn, seq_id, spec)
        show(
            args, {"id": step_id, **asdict(spec)}, f"step {spec.position} of sequence {seq_id}: set"
        )
    except (Invalid, NotFound, Conflict) as exc:
        raise Refused(str(exc)) from None


async def sender(conn: Any, args: argparse.Namespace, show: Any, limits: dict[str, Any]) -> None:
    """create, list (set is the limits and accounts command)."""
    try:
        if args.action == "list":
            items = await definitions.senders(conn, limit=10_000)
            lines = [
                f"{s['id']}\t{s['email']}\t{s['name'] or ''}\thourly {s['hourly_limit']}"
                f"\tdaily {s['daily_limit']}\tnew {s['daily_new_limit']}"
                f"\tgap {s['min_gap_seconds']} s"
                for s in items
            ]
            show(args, items, "\n".join(lines))
            return
        sender_id = await definitions.create_sender(conn, args.email, args.name, limits)
        show(args, {"id": sender_id}, f"sender {args.email}: created ({sender_id})")
    except (Invalid, NotFound, Conflict, InvalidLimit) as exc:
        raise Refused(str(exc)) from None
