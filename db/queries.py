"""Named SQL blocks loaded once from `db/sql/*.sql` (`-- name: <query>` starts a block)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).with_name("sql")
# Counts of a backlog (due leads, unpublished rows) stop here ("10000+"): a backlog that size
# is what an operator needs to know, and counting further would scan it on every call.
COUNT_CAP = 10_000
_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split a .sql file into its named blocks."""
    parts = _NAME.split(text)
    blocks: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in blocks:
            raise ValueError(f"query {name!r} is defined twice")
        blocks[name] = body.strip()
    return blocks


@cache
def load(table: str) -> dict[str, str]:
    """Return the named queries of `db/sql/<table>.sql`."""
    return parse((SQL_DIR / f"{table}.sql").read_text(encoding="utf-8"))


def query(table: str, name: str) -> str:
    """Return one named query; a missing name is a programming error."""
    return load(table)[name]
