"""A lint of a Prometheus scrape, after promtool's `check metrics` rules: it parses as the
text format, every family has help, names are snake_case, counters end in `_total`, no name
is exported twice, and (ours) no label outside an `_info` series carries an address."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def lint(text: str) -> list[str]:
    """The problems found in one scrape; [] when it is clean."""
    problems: list[str] = []
    seen: set[str] = set()
    for family in text_string_to_metric_families(text):
        if family.name in seen:
            problems.append(f"{family.name}: exported twice")
        seen.add(family.name)
        if not _NAME.match(family.name):
            problems.append(f"{family.name}: not snake_case")
        if not family.documentation:
            problems.append(f"{family.name}: no help text")
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith(("_total", "_created")):
                problems.append(f"{sample.name}: a counter's sample without _total")
            if not family.name.endswith("_info") and any("@" in v for v in sample.labels.values()):
                problems.append(f"{sample.name}: an address in a label {sample.labels}")
    return problems


def names(text: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(text)}
