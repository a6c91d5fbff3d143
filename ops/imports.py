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

import asyncio
import codecs
import collections
import csv
import difflib
import io
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

import asyncpg

from core import message, render
from core.windows import InvalidTimezone, load_zone
from db.pool import Conn
from db.queries import query
from ops.errors import Invalid
from ops.leads import NotFound

COLUMNS = ("email", "first_name", "last_name", "company", "timezone")
_ATTRIBUTE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_FIELD = 10_000
BATCH = 5_000
# Reading and checking rows is CPU work on the event loop: it gives way this often, so an
# import of any size (all of it rejected, say) never holds up the API's other requests.
TURN_SECONDS = 0.02
# The parts a rejected-rows file is kept in for its download.
REJECTS_PART = 2**20


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
        verb = "would import" if self.dry_run else "imported"
        done = f"{verb} {self.imported}, duplicates {self.duplicates}, rejected {self.rejected}"
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
    if "*" in email:
        raise Rejected(f"email: {email!r} is a pattern, not one address")
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


class Unreadable(Invalid):
    """The file as a whole cannot be read (its encoding, its header): nothing is imported."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}", message)
        self.line = line


# Header names as spreadsheets write them, matched case- and space-insensitively.
_ALIASES = {
    "e_mail": "email", "email_address": "email", "e_mail_address": "email", "mail": "email",
    "firstname": "first_name", "given_name": "first_name", "forename": "first_name",
    "lastname": "last_name", "surname": "last_name", "family_name": "last_name",
    "company_name": "company", "organization": "company", "organisation": "company",
    "time_zone": "timezone", "tz": "timezone",
}  # fmt: skip
_DELIMITERS = (",", ";", "\t", "|")
# A quoted field that has not closed after this many lines is taken as a runaway quote: its
# first line is rejected and reading goes on at the next one.
RUNAWAY_LINES = 50


def column_name(header: str) -> str:
    """A header cell as the column it names: "First Name" and "first_name" are one."""
    name = re.sub(r"[\s\-.]+", "_", header.strip().lower()).strip("_")
    return _ALIASES.get(name, name)


def _delimiter(header: str) -> str:
    """The delimiter a header line uses (the one of `, ; tab |` it holds most of)."""
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def encoding_of(binary: BinaryIO) -> str:
    """The encoding to read a file in: UTF-16 or UTF-8 by its byte-order mark, else UTF-8,
    checked line by line; Unreadable names the first line that is not. Leaves the stream
    at its start."""
    start = binary.read(4)
    binary.seek(0)
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    try:
        while chunk := binary.read(1 << 20):
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                good = chunk[: exc.start]
                raise Unreadable(
                    line + good.count(b"\n"),
                    "not UTF-8 text (save the file as UTF-8, or UTF-16 with a byte-order mark)",
                ) from None
            line += text.count("\n")
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise Unreadable(line, "not UTF-8 text (the file ends inside a character)") from None
    finally:
        binary.seek(0)
    return "utf-8-sig"


def text_of(binary: BinaryIO) -> TextIO:
    """An uploaded or opened file as text, in the encoding it is in (`encoding_of`)."""
    return io.TextIOWrapper(binary, encoding=encoding_of(binary), newline="")


@dataclass(slots=True)
class Record:
    """One data row of a file: its first line's number, its text as read, and its fields
    (or why it cannot be read)."""

    line: int
    text: str
    fields: dict[str, Any] | str


def csv_records(stream: TextIO) -> Iterator[Record]:
    """The data rows of a CSV file (`,` `;` tab or `|`, detected from the header), each with
    the text it was read from; Unreadable for a header without an `email` column."""
    lines = _physical_lines(stream)
    first = next(lines, None)
    if first is None:
        return
    _, header_text = first
    delimiter = _delimiter(header_text)
    try:
        header = [column_name(h) for h in next(csv.reader([header_text], delimiter=delimiter))]
    except (csv.Error, StopIteration) as exc:
        raise Unreadable(1, f"header: {exc}") from None
    if "email" not in header:
        close = difflib.get_close_matches("email", header, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise Unreadable(
            1, f"header: no email column{hint}; the header reads {header_text[:200]!r}"
        )
    for dup in {h for h in header if header.count(h) > 1}:
        raise Unreadable(1, f"header: the column {dup!r} is named twice")
    queue: collections.deque[tuple[int, str]] = collections.deque()  # lines to read again
    pending: list[tuple[int, str]] = []  # the lines of a record whose quoted field is open
    quotes = _Quotes(delimiter)
    size = 0
    while True:
        item = queue.popleft() if queue else next(lines, None)
        if item is None and not pending:
            return
        if item is not None:
            pending.append(item)
            size += len(item[1])
            if quotes.feed(item[1]) and len(pending) < RUNAWAY_LINES and size < 4 * MAX_FIELD:
                continue  # inside a quoted field: the record goes on over the next line
        if quotes.open:  # never closed: at the end of the file, or too long to be a field
            start, first_text = pending[0]
            yield Record(start, first_text, "a quoted field opened on this line is never closed")
            queue.extendleft(reversed(pending[1:]))  # read the lines after it afresh
        else:
            joined = "\n".join(t for _, t in pending)
            if joined.strip():
                yield _record(pending[0][0], joined, header, delimiter)
        pending, size, quotes = [], 0, _Quotes(delimiter)


class _Quotes:
    """Whether a record read so far ends inside a quoted field: a field is quoted when it
    starts with `"`, and `""` inside it is one quote (RFC 4180); a quote elsewhere in a field
    is a character like any other. Fed line by line, in time linear in the record."""

    def __init__(self, delimiter: str) -> None:
        self.delimiter = delimiter
        self.open = False
        self.field_start = True

    def feed(self, line: str) -> bool:
        i, n = 0, len(line)
        if not self.open:  # a new record (else the line break was inside the field)
            self.field_start = True
        while i < n:
            c = line[i]
            if self.open:
                if c == '"':
                    if i + 1 < n and line[i + 1] == '"':
                        i += 1  # an escaped quote
                    else:
                        self.open = False
            elif c == self.delimiter:
                self.field_start = True
                i += 1
                continue
            elif c == '"' and self.field_start:
                self.open = True
            self.field_start = False
            i += 1
        return self.open


def _record(line: int, text: str, header: list[str], delimiter: str) -> Record:
    try:
        values = next(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error as exc:
        return Record(line, text, f"not CSV: {exc}")
    if len(values) != len(header):
        return Record(line, text, f"{len(values)} fields, the header has {len(header)}")
    return Record(line, text, dict(zip(header, values, strict=True)))


def _physical_lines(stream: TextIO) -> Iterator[tuple[int, str]]:
    for number, text in enumerate(stream, start=1):
        yield number, text.rstrip("\r\n")


def jsonl_records(stream: TextIO) -> Iterator[Record]:
    for n, text in enumerate(stream, start=1):
        line = text.rstrip("\r\n")
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except (ValueError, RecursionError) as exc:
            yield Record(n, line, f"not JSON: {exc}")
            continue
        yield Record(n, line, fields if isinstance(fields, dict) else "not a JSON object")


def records(stream: TextIO, kind: str) -> Iterator[Record]:
    """The file's records: `kind` is csv or jsonl."""
    return csv_records(stream) if kind == "csv" else jsonl_records(stream)


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
    """Rejected rows as CSV: line, reason, then the row's text as it was read."""

    def __init__(self, out: TextIO | None) -> None:
        self.out = csv.writer(out) if out is not None else None
        if self.out is not None:
            self.out.writerow(["line", "reason", "record"])

    def add(self, record: Record, reason: str) -> None:
        if self.out is not None:
            self.out.writerow([record.line, reason, record.text])


async def import_leads(
    conn: Conn,
    sequence: str | int,
    rows: Iterable[Record],
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
    batch: list[tuple[Row, Record]] = []

    def reject(record: Record, reason: str) -> None:
        report.rejected += 1
        if len(report.rejections) < keep_rejections:
            report.rejections.append((record.line, reason))
        if rejects is not None:
            rejects.add(record, reason)

    async def flush() -> None:
        await _store(
            conn,
            insert,
            batch,
            report,
            sequence_id=seq["id"],
            sender=sender_row,
            on_duplicate=on_duplicate,
            reject=reject,
        )
        batch.clear()

    turn = time.monotonic()
    try:
        for record in rows:
            report.rows += 1
            if time.monotonic() - turn > TURN_SECONDS:
                await asyncio.sleep(0)
                turn = time.monotonic()
            try:
                row = _checked(record, templates)
            except Rejected as exc:
                reject(record, str(exc))
                continue
            batch.append((row, record))
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


async def keep_rejects(conn: Conn, owner: str, text: TextIO) -> str:
    """Keep a rejected-rows file (read from `text`) for `owner` to download within a day;
    returns the token of its link."""
    token = secrets.token_urlsafe(24)
    await conn.execute(query("imports", "forget_rejects"))
    part = 0
    while chunk := text.read(REJECTS_PART):
        await conn.execute(query("imports", "keep_rejects"), token, part, owner, chunk)
        part += 1
    return token


async def rejects(pool: asyncpg.Pool, token: str, owner: str) -> AsyncIterator[str]:
    """The parts of a kept rejected-rows file, in order, a few at a time (any size streams in
    little memory). NotFound at once if `owner` has no file with that token."""
    sql = query("imports", "rejects")
    async with pool.acquire() as conn:
        first = [r["body"] for r in await conn.fetch(sql, token, owner, 0)]
    if not first:
        raise NotFound("no such rejected rows (they are kept for a day after the import)")

    async def parts(bodies: list[str]) -> AsyncIterator[str]:
        part = 0
        while bodies:
            for body in bodies:
                yield body
            part += len(bodies)
            async with pool.acquire() as conn:
                bodies = [r["body"] for r in await conn.fetch(sql, token, owner, part)]

    return parts(first)


def _checked(record: Record, templates: _Templates) -> Row:
    if isinstance(record.fields, str):
        raise Rejected(record.fields)
    row = make_row(record.line, record.fields)
    templates.check(row)
    return row


def _key(sequence: str | int) -> tuple[int | None, str | None]:
    if isinstance(sequence, int):
        return sequence, None
    return None, sequence


async def _store(
    conn: Conn,
    insert: str,
    batch: list[tuple[Row, Record]],
    report: Report,
    *,
    sequence_id: int,
    sender: Any,
    on_duplicate: str,
    reject: Callable[[Record, str], None],
) -> None:
    """Store a batch in one statement; should the table refuse one of its rows (a rule the
    row checks do not know), the batch is stored row by row and that row is rejected with
    the table's reason: no row aborts an import."""
    if on_duplicate == "update":
        # One statement may not update a row twice: within a batch the last row wins.
        last: dict[str, tuple[Row, Record]] = {}
        for item in batch:
            last[item[0].email.lower()] = item
        report.duplicates += len(batch) - len(last)
        batch = list(last.values())
    refused = 0
    try:
        async with conn.transaction():
            rows = await _insert(conn, insert, [r for r, _ in batch], sequence_id, sender)
    except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError):
        rows = []
        for row, record in batch:
            try:
                async with conn.transaction():
                    rows += await _insert(conn, insert, [row], sequence_id, sender)
            except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as exc:
                refused += 1
                reject(record, f"refused by the database: {exc}"[:500])
    inserted = sum(1 for r in rows if r["inserted"])
    report.imported += inserted
    report.updated += len(rows) - inserted
    report.duplicates += len(batch) - refused - inserted


async def _insert(
    conn: Conn, insert: str, batch: list[Row], sequence_id: int, sender: Any
) -> list[Any]:
    return await conn.fetch(
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
