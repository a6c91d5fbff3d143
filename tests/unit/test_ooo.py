"""Return dates in out-of-office replies, as people write them."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.ooo import return_date

TODAY = date(2026, 12, 5)  # a Saturday
MONTHS_EN = ["January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December"]  # fmt: skip
MONTHS_DE = ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August",
             "September", "Oktober", "November", "Dezember"]  # fmt: skip
MONTHS_FR = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
             "septembre", "octobre", "novembre", "décembre"]  # fmt: skip
MONTHS_ES = ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
             "septiembre", "octubre", "noviembre", "diciembre"]  # fmt: skip


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 11 <= n % 100 <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


FORMS = [
    lambda d: f"I am out of the office until {MONTHS_EN[d.month - 1]} {d.day}.",
    lambda d: f"Thanks for your email. I'm back on {d.day:02d}/{d.month:02d}.",
    lambda d: f"On vacation, returning {MONTHS_EN[d.month - 1]} {_ordinal(d.day)}, {d.year}.",
    lambda d: f"I will return on {d.day} {MONTHS_EN[d.month - 1]} {d.year}",
    lambda d: f"Away until {d.isoformat()} with limited access to email.",
    lambda d: f"Ich bin bis zum {d.day}. {MONTHS_DE[d.month - 1]} nicht im Büro.",
    lambda d: f"Ab dem {d.day}.{d.month}.{d.year} bin ich wieder erreichbar.",
    lambda d: f"Je suis absent jusqu'au {d.day} {MONTHS_FR[d.month - 1]}.",
    lambda d: f"Estoy fuera de la oficina hasta el {d.day} de {MONTHS_ES[d.month - 1]}.",
    lambda d: (
        f"On leave from {MONTHS_EN[TODAY.month - 1]} {TODAY.day} until "
        f"{MONTHS_EN[d.month - 1]} {d.day}"
    ),
]


@given(st.integers(1, 330), st.sampled_from(range(len(FORMS))))
def test_a_return_date_written_as_people_do_is_read(ahead: int, form: int) -> None:
    back = TODAY + timedelta(days=ahead)
    assert return_date(FORMS[form](back), TODAY) == back


@given(st.integers(1, 6), st.integers(0, 4))
def test_a_weekday_is_the_next_one(ahead: int, extra_weeks: int) -> None:
    back = TODAY + timedelta(days=ahead + 7 * extra_weeks)
    name = back.strftime("%A")
    assert return_date(f"I'm back on {name} the {_ordinal(back.day)}.", TODAY) == back
    nearest = TODAY + timedelta(days=(back.weekday() - TODAY.weekday()) % 7 or 7)
    assert return_date(f"Returning {name}.", TODAY) == nearest


@pytest.mark.parametrize(
    "text",
    [
        "I am away on business with limited access to email.",
        "Back on 31/02.",  # no such day
        "Until further notice I am out of the office.",
        "I will be back in 2031.",  # not a day
        "Out until 14/13.",
        "",
    ],
)
def test_no_readable_date_is_none(text: str) -> None:
    assert return_date(text, TODAY) is None


@given(st.text(max_size=300))
def test_any_text_reads_to_a_date_within_a_year_or_none(text: str) -> None:
    found = return_date(text, TODAY)
    assert found is None or TODAY - timedelta(days=7) <= found <= TODAY + timedelta(days=366)
