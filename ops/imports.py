"""Importing leads into a sequence from CSV or JSON Lines, streaming, in constant memory.

Each row is checked before it is stored: one address (the syntax the worker can send to),
a timezone the tz database knows, attributes that templates can name (and values that are
plain JSON scalars), and the sequence's templates render for it (checked once for each
shape of row: the same attribute names with the same value types). Duplicates, within the
file or against the sequence, are found by the database's unique index on (sequence,
lower-cased address): skipped, or updated. Rows go in batches, one transaction each, so an
interrupted import is simply run again (what is in is a duplicate the second time). A dry
run does all of it in one transaction that is rolled back. Rejected rows go to a CSV file
with their line number and the reason.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from core import message, render
from core.windows import InvalidTimezone, load_zone
from db.pool import Conn
from db.queries import query
from ops.leads import NotFound

COLUMNS = ("email", "first_name", "last_name", "company", "timezone")
_ATTRIBUTE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_FIELD = 10_000
BATCH = 5_000


class Rejected(ValueError):
    """A row that cannot be imported; the message says why."""


@dataclass(slots=True)
class Report:
    rows: int = 0
    imported: int = 0
    updated: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[tuple[int, str]] = field(default_factory=list)  # the first ones
    dry_run: bool = False

    def line(self) -> str:
        done = f"imported {self.imported}, duplicates {self.duplicates}, rejected {self.rejected}"
        if self.updated:
            done += f" (updated {self.updated})"
        return done + (" (dry run: nothing stored)" if self.dry_run else "")


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    timezone: str | None
    attributes: dict[str, Any]


def _text(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Rejected(f"{name}: not text")
    if len(value) > MAX_FIELD or "\x00" in value:
        raise Rejected(f"{name}: longer than {MAX_FIELD} characters or holds a NUL")
    return value.strip() or None


def make_row(line: int, record: dict[str, Any]) -> Row:
    """A checked row from one record of the file (columns by name); Rejected if it is bad."""
    email = _text(record.get("email"), "email")
    if email is None:
        raise Rejected("email: missing")
    try:
        message.check_address(email)
    except message.InvalidAddress as exc:
        raise Rejected(f"email: {exc}") from None
    tz = _text(record.get("timezone"), "timezone")
    if tz is not None:
        try:
            load_zone(tz)
        except InvalidTimezone as exc:
            raise Rejected(f"timezone: {exc}") from None
    attributes: dict[str, Any] = {}
    nested = record.get("attributes")
    if nested is not None and not isinstance(nested, dict):
        raise Rejected("attributes: not an object")
    for key, value in [*(nested or {}).items(), *record.items()]:
        if key in COLUMNS or key == "attributes":
            continue
        if not isinstance(key, str) or not _ATTRIBUTE.match(key):
            raise Rejected(f"attribute {key!r}: a name templates can use: letters, digits, _")
        if value is None or value == "":
            continue  # absent: `default()` in a template applies
        if isinstance(value, str):
            if len(value) > MAX_FIELD or "\x00" in value:
                raise Rejected(f"attribute {key}: longer than {MAX_FIELD} or holds a NUL")
        elif not isinstance(value, bool | int | float):
            raise Rejected(f"attribute {key}: not text, a number or true/false")
        attributes[key] = value
    return Row(
        line=line,
        email=email,
        first_name=_text(record.get("first_name"), "first_name"),
        last_name=_text(record.get("last_name"), "last_name"),
        company=_text(record.get("company"), "company"),
        timezone=tz,
        attributes=attributes,
    )


def read_csv(stream: TextIO) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line, record) per data row; (line, reason) for one that cannot be read."""
    reader = csv.reader(stream)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        yield 1, f"header: {exc}"
        return
    if "email" not in header:
        yield 1, "header: no `email` column"
        return
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, f"not CSV: {exc}"
            continue
        if not values:
            continue
        if len(values) != len(header):
            yield reader.line_num, f"{len(values)} fields, the header has {len(header)}"
            continue
        yield reader.line_num, dict(zip(header, values, strict=True))


def read_jsonl(stream: TextIO) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for n, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except ValueError as exc:
            yield n, f"not JSON: {exc}"
            continue
        yield (n, record) if isinstance(record, dict) else (n, "not a JSON object")


def records(stream: TextIO, kind: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """The file's records: `kind` is csv or jsonl."""
    return read_csv(stream) if kind == "csv" else read_jsonl(stream)


class _Templates:
    """The sequence's steps, rendered for each new shape of row."""

    def __init__(self, steps: list[dict[str, Any]], sender: dict[str, Any] | None) -> None:
        self.steps = steps
        self.sender = sender or {"email": "sender@example.com", "name": "Sender"}
        self.seen: set[tuple[tuple[str, str], ...]] = set()

    def check(self, row: Row) -> None:
        shape = tuple(sorted((k, type(v).__name__) for k, v in row.attributes.items()))
        if shape in self.seen:
            return
        ctx = render.lead_context(
            email=row.email,
            first_name=row.first_name,
            last_name=row.last_name,
            company=row.company,
            attributes=row.attributes,
            extra={
                "sender_name": self.sender["name"],
                "sender_email": self.sender["email"],
                "unsubscribe_url": "https://example.com/u/token",
            },
        )
        for step in self.steps:
            ctx["step"] = step["position"]
            for part, html in (("subject", False), ("body_text", False), ("body_html", True)):
                if step[part] is not None:
                    try:
                        render.render(step[part], ctx, part=f"step {step['position']} {part}",
                                      html=html)  # fmt: skip
                    except render.TemplateError as exc:
                        raise Rejected(str(exc)) from None
        self.seen.add(shape)


class RejectFile:
    """Rejected rows as CSV: line, reason, then the row as it was read."""

    def __init__(self, out: TextIO | None) -> None:
        self.out = csv.writer(out) if out is not None else None
        if self.out is not None:
            self.out.writerow(["line", "reason", "record"])

    def add(self, line: int, reason: str, record: Any) -> None:
        if self.out is not None:
            shown = record if isinstance(record, str) else json.dumps(record, default=str)
            self.out.writerow([line, reason, shown])


async def import_leads(
    conn: Conn,
    sequence: str | int,
    rows: Iterable[tuple[int, dict[str, Any] | str]],
    *,
    sender: str | None = None,
    on_duplicate: str = "skip",
    dry_run: bool = False,
    rejects: RejectFile | None = None,
    progress: Callable[[Report], None] | None = None,
    keep_rejections: int = 100,
) -> Report:
    """Check and store the rows; the report says what happened to each."""
    report = Report(dry_run=dry_run)
    seq = await conn.fetchrow(query("imports", "sequence"), *_key(sequence))
    if seq is None:
        raise NotFound(f"no sequence {sequence!r}")
    sender_row = None
    if sender is not None:
        sender_row = await conn.fetchrow(query("imports", "sender"), sender)
        if sender_row is None:
            raise NotFound(f"no sender {sender!r}")
    templates = _Templates(
        [dict(r) for r in await conn.fetch(query("imports", "steps"), seq["id"])],
        dict(sender_row) if sender_row else None,
    )
    insert = query("imports", "insert_update" if on_duplicate == "update" else "insert_skip")
    tx = conn.transaction() if dry_run else None
    if tx is not None:
        await tx.start()
    batch: list[Row] = []

    async def flush() -> None:
        await _store(
            conn,
            insert,
            batch,
            report,
            sequence_id=seq["id"],
            sender=sender_row,
            on_duplicate=on_duplicate,
        )
        batch.clear()

    try:
        for line, record in rows:
            report.rows += 1
            try:
                row = _checked(line, record, templates)
            except Rejected as exc:
                report.rejected += 1
                if len(report.rejections) < keep_rejections:
                    report.rejections.append((line, str(exc)))
                if rejects is not None:
                    rejects.add(line, str(exc), record)
                continue
            batch.append(row)
            if len(batch) >= BATCH:
                await flush()
                if progress is not None:
                    progress(report)
        if batch:
            await flush()
        if progress is not None:
            progress(report)
    finally:
        if tx is not None:
            await tx.rollback()
    return report


def _checked(line: int, record: dict[str, Any] | str, templates: _Templates) -> Row:
    if isinstance(record, str):
        raise Rejected(record)
    row = make_row(line, record)
    templates.check(row)
    return row


def _key(sequence: str | int) -> tuple[int | None, str | None]:
    if isinstance(sequence, int):
        return sequence, None
    return None, sequence


async def _store(
    conn: Conn,
    insert: str,
    batch: list[Row],
    report: Report,
    *,
    sequence_id: int,
    sender: Any,
    on_duplicate: str,
) -> None:
    if on_duplicate == "update":
        # One statement may not update a row twice: within a batch the last row wins.
        last: dict[str, Row] = {}
        for row in batch:
            last[row.email.lower()] = row
        report.duplicates += len(batch) - len(last)
        batch = list(last.values())
    rows = await conn.fetch(
        insert,
        sequence_id,
        None if sender is None else sender["id"],
        [r.email for r in batch],
        [r.first_name for r in batch],
        [r.last_name for r in batch],
        [r.company for r in batch],
        [r.timezone for r in batch],
        [json.dumps(r.attributes) for r in batch],
    )
    inserted = sum(1 for r in rows if r["inserted"])
    report.imported += inserted
    report.updated += len(rows) - inserted
    report.duplicates += len(batch) - inserted


def open_text(data: bytes) -> TextIO:
    """Uploaded bytes as text (UTF-8, a byte-order mark allowed)."""
    return io.StringIO(data.decode("utf-8-sig", errors="replace"))
