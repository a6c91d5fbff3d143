"""The bounce classifier (core/inbound.py) against an established one, Sisimai (Debian's
libsisimai-perl), over the corpus of real bounces, complaints and auto-replies in
`tests/data/bounces` (BSD 2-clause, its LICENSE beside it; or BOUNCE_CORPUS): per message, do the failed recipients and
the hard/soft verdicts agree, and how often would we suppress an address as a hard bounce
that Sisimai calls soft or no bounce at all. Prints the confusion table.

The thresholds are the level the classifier has reached (a regression fails the test); the
product's goal is 95 % agreement and under 1 % wrong hard suppressions.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from core.inbound import Kind, classify

CORPUS = Path(os.environ.get("BOUNCE_CORPUS", Path(__file__).resolve().parents[1] / "data/bounces"))
ORACLE = r"""
use Sisimai;
for my $f (@ARGV) {
  my $r = Sisimai->make($f, delivered => 1, vacation => 1) || [];
  print "$f\t-\t-\t-\n" unless @$r;
  print join("\t", $f, lc $_->recipient->address, $_->reason, $_->softbounce), "\n" for @$r;
}
"""
AGREEMENT_FLOOR = 0.88
WRONG_HARD_CEILING = 0.04
ACTED_FLOOR = 0.95  # of the messages Sisimai reads: a lead stopped or failed alike


def _oracle(files: list[Path]) -> dict[str, set[tuple[str, str]]]:
    out = subprocess.run(
        ["perl", "-e", ORACLE, *map(str, files)], capture_output=True, text=True, check=True
    ).stdout
    verdicts: dict[str, set[tuple[str, str]]] = collections.defaultdict(set)
    for line in out.splitlines():
        path, rcpt, reason, soft = line.split("\t")
        name = Path(path).name
        verdicts.setdefault(name, set())
        if rcpt == "-" or reason == "delivered":
            continue
        kind = {"feedback": "complaint", "vacation": "auto"}.get(reason)
        verdicts[name].add(
            ("*", "auto") if kind == "auto" else (rcpt, kind or ("soft" if soft == "1" else "hard"))
        )
    return verdicts


def _ours(raw: bytes) -> set[tuple[str, str]]:
    got = classify(raw)
    if got.kind == Kind.BOUNCE:
        return {(f.recipient, "hard" if f.hard else "soft") for f in got.failures}
    if got.kind == Kind.COMPLAINT:
        return {(a, "complaint") for a in got.complained}
    return {("*", "auto")} if got.kind == Kind.AUTO_REPLY else set()


def test_the_classifier_agrees_with_sisimai_on_real_bounces() -> None:
    if (
        shutil.which("perl") is None
        or subprocess.run(
            ["perl", "-MSisimai", "-e", "1"], capture_output=True, check=False
        ).returncode
    ):
        pytest.fail("Sisimai is not installed: apt-get install libsisimai-perl (make test does)")
    files = sorted(CORPUS.glob("*.eml"))
    assert len(files) > 400, CORPUS
    oracle = _oracle(files)
    table: collections.Counter[tuple[str, str]] = collections.Counter()
    agree = wrong_hard = read = agree_read = acted_read = wrong_read = 0
    for path in files:
        want, got = oracle[path.name], _ours(path.read_bytes())
        agree += want == got
        wrong = any(v == "hard" and (r, "hard") not in want for r, v in got)
        wrong_hard += wrong
        if want:  # Debian's Sisimai 4.25 has no verdict for some MTAs (DragonFly)
            read += 1
            agree_read += want == got
            # What the product does with it: the lead stopped or failed (a hard bounce or
            # a complaint), or not.
            acted_read += _acted(want) == _acted(got)
            wrong_read += wrong
        table[(",".join(sorted({v for _, v in want})) or "none",
               ",".join(sorted({v for _, v in got})) or "none")] += 1  # fmt: skip
    print(f"\n{len(files)} messages: agree {agree} ({agree / len(files):.1%}),"
          f" hard suppressions Sisimai does not call hard: {wrong_hard}"
          f" ({wrong_hard / len(files):.1%}); of the {read} Sisimai gives a verdict for,"
          f" agree {agree_read} ({agree_read / read:.1%}), acted on alike {acted_read}"
          f" ({acted_read / read:.1%}), hard where Sisimai is not {wrong_read}"
          f" ({wrong_read / read:.1%})")  # fmt: skip
    for (theirs, ours), n in sorted(table.items()):
        print(f"  Sisimai {theirs:>14}  ours {ours:>14}  {n:4}")
    assert agree / len(files) >= AGREEMENT_FLOOR
    assert wrong_hard / len(files) <= WRONG_HARD_CEILING
    assert acted_read / read >= ACTED_FLOOR


def _acted(verdicts: set[tuple[str, str]]) -> bool:
    return any(v in ("hard", "complaint") for _, v in verdicts)
