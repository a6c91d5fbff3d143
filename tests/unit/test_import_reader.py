"""The import's CSV reader (ops/imports.py) against Python's csv writer: whatever fields a
spreadsheet writes (quotes, delimiters and line breaks inside them, any delimiter of the
four), the reader gives them back, each row with the line it starts on and its text."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ops.imports import Unreadable, column_name, csv_records, encoding_of

field = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00\r"),
    max_size=30,
)


@given(
    rows=st.lists(st.lists(field, min_size=3, max_size=3), min_size=1, max_size=20),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
)
@settings(max_examples=300, deadline=None)
def test_what_a_csv_writer_writes_is_read_back(rows: list[list[str]], delimiter: str) -> None:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(["email", "first_name", "plan"])
    writer.writerows(rows)
    got = list(csv_records(io.StringIO(out.getvalue())))

    def written(row: list[str]) -> str:
        one = io.StringIO()
        csv.writer(one, delimiter=delimiter, lineterminator="\n").writerow(row)
        return one.getvalue()

    wanted = [r for r in rows if written(r).strip()]  # a blank line is no row
    assert [list(r.fields.values()) for r in got if isinstance(r.fields, dict)] == wanted
    text = out.getvalue().split("\n")
    for r in got:
        assert text[r.line - 1] == r.text.split("\n")[0]


def test_a_quote_inside_an_unquoted_field_is_a_character() -> None:
    got = list(csv_records(io.StringIO("email,name\na@x.test,<b>\"'</b>\nb@x.test,B\n")))
    assert [r.fields for r in got] == [
        {"email": "a@x.test", "name": "<b>\"'</b>"}, {"email": "b@x.test", "name": "B"},
    ]  # fmt: skip


def test_a_runaway_quote_costs_its_line_only() -> None:
    text = 'email,name\na@x.test,"Ann\nb@x.test,Bob\nc@x.test,Cy\n'
    got = list(csv_records(io.StringIO(text)))
    assert [(r.line, r.fields) for r in got] == [
        (2, "a quoted field opened on this line is never closed"),
        (3, {"email": "b@x.test", "name": "Bob"}),
        (4, {"email": "c@x.test", "name": "Cy"}),
    ]


@pytest.mark.parametrize(
    ("header", "column"),
    [("Email", "email"), (" E-mail ", "email"), ("First Name", "first_name"),
     ("LAST_NAME", "last_name"), ("Time Zone", "timezone"), ("Plan Type", "plan_type")],
)  # fmt: skip
def test_headers_as_people_write_them(header: str, column: str) -> None:
    assert column_name(header) == column


def test_encodings_by_their_byte_order_mark_else_utf8_or_the_first_bad_line() -> None:
    assert encoding_of(io.BytesIO("email\nzoë@x\n".encode("utf-16"))) == "utf-16"
    assert encoding_of(io.BytesIO(b"\xef\xbb\xbfemail\n")) == "utf-8-sig"
    with pytest.raises(Unreadable, match="line 3: not UTF-8"):
        encoding_of(io.BytesIO("email\na@x\nren\xe9@x\n".encode("latin-1")))
