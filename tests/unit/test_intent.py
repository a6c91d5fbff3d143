"""Reply intent (core/intent.py) on the labelled replies in tests/data/replies.txt: an
unsubscribe by reply suppresses an address, so its precision is held at 0.99 and its recall
at 0.9; the traps (replies that use an unsubscribe's words about something else) are in the
corpus. Prints the confusion table."""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from core.intent import Intent, asks_to_unsubscribe, read

CORPUS = Path(__file__).resolve().parents[1] / "data/replies.txt"


@dataclass(frozen=True)
class Reply:
    label: Intent
    language: str
    subject: str
    text: str


def replies() -> list[Reply]:
    out = []
    for block in re.split(r"^=== ", CORPUS.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]:
        head, _, body = block.partition("\n")
        label, language = head.split()
        lines = [ln for ln in body.strip().splitlines() if not ln.startswith("# ")]
        subject = (
            lines.pop(0)[len("Subject: ") :] if lines and lines[0].startswith("Subject: ") else ""
        )
        out.append(Reply(Intent(label), language, subject, "\n".join(lines).strip()))
    return out


def test_the_corpus_is_large_and_varied() -> None:
    got = replies()
    assert len(got) >= 200
    by_label = collections.Counter(r.label for r in got)
    assert all(by_label[i] >= 25 for i in Intent), by_label
    assert len({r.language for r in got}) >= 6


def test_unsubscribe_precision_and_recall_on_the_labelled_replies() -> None:
    got = replies()
    table: collections.Counter[tuple[str, str]] = collections.Counter()
    tp = fp = fn = 0
    wrong = []
    for r in got:
        verdict = read(r.text, r.subject)
        table[(r.label, verdict)] += 1
        said, meant = verdict is Intent.UNSUBSCRIBE, r.label is Intent.UNSUBSCRIBE
        tp += said and meant
        fp += said and not meant
        fn += meant and not said
        if verdict is not r.label:
            wrong.append(f"  {r.label} read as {verdict}: {r.subject or r.text[:70]!r}")
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn)
    accuracy = sum(n for (a, b), n in table.items() if a == b) / len(got)
    print(f"\n{len(got)} replies: unsubscribe precision {precision:.3f} ({tp} of {tp + fp}),"
          f" recall {recall:.3f} ({tp} of {tp + fn}); intent accuracy {accuracy:.1%}")  # fmt: skip
    for (label, read_as), n in sorted(table.items()):
        print(f"  {label:>15} read as {read_as:<15} {n:4}")
    print("\n".join(wrong))
    assert precision >= 0.99
    assert recall >= 0.9
    assert accuracy >= 0.85


@given(st.text(max_size=2000))
def test_any_text_is_read_in_time_and_never_raises(text: str) -> None:
    assert read(text) in set(Intent)


def test_reading_is_linear_in_the_size_of_the_reply() -> None:
    """A hostile reply (a long run of words the patterns half match) is read at once."""
    for text in ("stop " * 20_000, "remove me from the " * 5_000, "don't " * 20_000):
        assert isinstance(asks_to_unsubscribe(text), bool)


def test_precision_and_recall_of_every_intent() -> None:
    """Each intent's precision and recall on the corpus, printed as a table; the console's
    inbox sorts by them, and an out-of-office reading defers a lead instead of stopping it,
    so both are held up."""
    got = replies()
    said: collections.Counter[Intent] = collections.Counter()
    meant: collections.Counter[Intent] = collections.Counter()
    right: collections.Counter[Intent] = collections.Counter()
    for r in got:
        verdict = read(r.text, r.subject)
        said[verdict] += 1
        meant[r.label] += 1
        right[verdict] += verdict is r.label
    print(f"\n{'intent':>15} {'precision':>10} {'recall':>8} {'labelled':>9}")
    scores = {}
    for i in Intent:
        precision = right[i] / said[i] if said[i] else 1.0
        recall = right[i] / meant[i]
        scores[i] = (precision, recall)
        print(f"{i.value:>15} {precision:>10.3f} {recall:>8.3f} {meant[i]:>9}")
    assert scores[Intent.OUT_OF_OFFICE][0] >= 0.9
    assert scores[Intent.OUT_OF_OFFICE][1] >= 0.85
    assert all(p >= 0.75 and r >= 0.7 for p, r in scores.values()), scores
