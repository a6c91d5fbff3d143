"""When an out-of-office writer is back: the return date their text gives, as people
write it ("until December 14", "back on 14/12", "returning Monday the 3rd", "bis zum 14.
Dezember", "jusqu'au 14 décembre", "hasta el 14 de diciembre", "2026-12-14"). Pure: the
date is read against the day the message arrived; a date without a year is the next such
day; nothing readable, or a date more than a year away, is None (the caller's default)."""

from __future__ import annotations

import re
from datetime import date, timedelta

_MONTHS = {
    # English, German, French, Spanish, Portuguese, Italian, Dutch (and short forms).
    **dict.fromkeys(("january", "jan", "januar", "janvier", "enero", "janeiro", "gennaio",
                     "januari", "jänner"), 1),
    **dict.fromkeys(("february", "feb", "februar", "février", "fevrier", "febrero",
                     "fevereiro", "febbraio", "februari"), 2),
    **dict.fromkeys(("march", "mar", "märz", "maerz", "mars", "marzo", "março", "marco",
                     "maart"), 3),
    **dict.fromkeys(("april", "apr", "avril", "abril", "aprile"), 4),
    **dict.fromkeys(("may", "mai", "mayo", "maio", "maggio", "mei"), 5),
    **dict.fromkeys(("june", "jun", "juni", "juin", "junio", "junho", "giugno"), 6),
    **dict.fromkeys(("july", "jul", "juli", "juillet", "julio", "julho", "luglio"), 7),
    **dict.fromkeys(("august", "aug", "août", "aout", "agosto", "augustus"), 8),
    **dict.fromkeys(("september", "sep", "sept", "septembre", "septiembre", "setembro",
                     "settembre"), 9),
    **dict.fromkeys(("october", "oct", "oktober", "octobre", "octubre", "outubro", "ottobre"),
                    10),
    **dict.fromkeys(("november", "nov", "novembre", "noviembre", "novembro"), 11),
    **dict.fromkeys(("december", "dec", "dezember", "décembre", "decembre", "diciembre",
                     "dezembro", "dicembre"), 12),
}  # fmt: skip
_WEEKDAYS = {
    **dict.fromkeys(("monday", "montag", "lundi", "lunes", "segunda", "lunedì", "maandag"), 0),
    **dict.fromkeys(("tuesday", "dienstag", "mardi", "martes", "terça", "martedì", "dinsdag"), 1),
    **dict.fromkeys(("wednesday", "mittwoch", "mercredi", "miércoles", "quarta", "mercoledì",
                     "woensdag"), 2),
    **dict.fromkeys(("thursday", "donnerstag", "jeudi", "jueves", "quinta", "giovedì",
                     "donderdag"), 3),
    **dict.fromkeys(("friday", "freitag", "vendredi", "viernes", "sexta", "venerdì", "vrijdag"),
                    4),
    **dict.fromkeys(("saturday", "samstag", "samedi", "sábado", "sabato", "zaterdag"), 5),
    **dict.fromkeys(("sunday", "sonntag", "dimanche", "domingo", "domenica", "zondag"), 6),
}  # fmt: skip
# Words between a cue and its date: "until the 14th", "ab dem 6.12.", "hasta el lunes".
_FILLER = re.compile(r"^[\s:,]*(?:(?:the|dem|den|le|el|il|lo|o|a|de|am|on)\s+)*", re.IGNORECASE)

# The words before a return date: "until", "back on", "returning", "bis", "jusqu'au", …
_CUE = (
    r"(?:until|till|til|through|thru|back(?:\s+in\s+the\s+office)?(?:\s+(?:on|by))?"
    r"|return(?:ing|s)?(?:\s+on)?|from|bis(?:\s+(?:zum|einschließlich|einschliesslich))?"
    r"|zurück(?:\s+am)?|ab|jusqu['\u2019](?:au|à)|(?:de\s+)?retour(?:\s+le)?"
    r"|hasta(?:\s+el)?|regreso(?:\s+el)?|até|ate|fino\s+al|rientro(?:\s+il)?|tot\s+en\s+met"
    r"|terug\s+op|vanaf)"
)
_MONTH_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th|er|\.|º|°)?"
_YEAR = r"(?:,?\s*(?P<year>20\d\d))?"
_PATTERNS = [
    # 2026-12-14
    re.compile(r"(?P<year>20\d\d)-(?P<month>[01]?\d)-(?P<day>[0-3]?\d)\b"),
    # December 14(th)(, 2026)
    re.compile(rf"\b(?P<mname>{_MONTH_NAMES})\.?\s+{_DAY}(?!\d){_YEAR}", re.IGNORECASE),
    # 14(th) (of|de) December (2026)
    re.compile(
        rf"\b{_DAY}\s*(?:of\s+|de\s+|del\s+)?(?P<mname>{_MONTH_NAMES})\b\.?(?:\s+(?:de\s+)?"
        r"(?P<year>20\d\d))?",
        re.IGNORECASE,
    ),
    # 14/12(/2026), 14.12.(2026), 14-12 (day first, as most of the world writes it)
    re.compile(
        r"(?<![\d/.-])(?P<day>[0-3]?\d)[./](?P<month>[01]?\d)\.?(?:[./](?P<year>(?:20)?\d\d))?(?![\d/])"
    ),
]
# "Monday the 3rd", "Monday 3rd", "Monday": a weekday, and maybe a day of the month.
_WEEKDAY = re.compile(
    rf"\b(?P<wd>{'|'.join(_WEEKDAYS)})\b(?:,?\s+(?:the\s+)?{_DAY}(?!\d))?", re.IGNORECASE
)
# The cue as a word, and what follows it (not consumed: cues may overlap).
_CUED = re.compile(rf"\b{_CUE}(?!\w)\s*(?=(?P<rest>.{{0,60}}))", re.IGNORECASE | re.DOTALL)


def return_date(text: str, today: date) -> date | None:
    """The day the writer says they are back (or are away until), else None: the latest
    of the dates that follow a cue ("from the 7th until the 18th" is the 18th)."""
    found = [_read(cue.group("rest"), today) for cue in _CUED.finditer(text[:5000])]
    return max((d for d in found if d is not None), default=None)


def _read(rest: str, today: date) -> date | None:
    rest = rest[_FILLER.match(rest).end() :]  # type: ignore[union-attr]
    best: tuple[int, date] | None = None
    for pattern in _PATTERNS:
        m = pattern.match(rest)
        if m is None:
            continue
        got = _from_match(m, today)
        if got is not None and (best is None or m.start() < best[0]):
            best = (m.start(), got)
    if best is not None:
        return best[1]
    m = _WEEKDAY.match(rest)
    if m is not None:
        return _weekday(m, today)
    return None


def _from_match(m: re.Match[str], today: date) -> date | None:
    parts = m.groupdict()
    month = _MONTHS.get(parts["mname"].lower()) if parts.get("mname") else None
    if month is None:
        month = int(parts["month"]) if parts.get("month") else None
    if month is None or not 1 <= month <= 12:
        return None
    day = int(parts["day"])
    year = parts.get("year")
    if year is not None:
        y = int(year) + (2000 if len(year) == 2 else 0)
        return _checked(y, month, day, today)
    found = _checked(today.year, month, day, today, far=False)
    if found is not None and found < today - timedelta(days=7):
        found = _checked(today.year + 1, month, day, today)
    return found


def _weekday(m: re.Match[str], today: date) -> date | None:
    wd = _WEEKDAYS[m.group("wd").lower()]
    ahead = (wd - today.weekday()) % 7 or 7
    candidate = today + timedelta(days=ahead)
    if m.group("day") is None:
        return candidate
    day = int(m.group("day"))
    # The next day of that weekday that is that day of the month, within a year.
    for _ in range(60):
        if candidate.day == day:
            return candidate
        candidate += timedelta(days=7)
    return None


def _checked(year: int, month: int, day: int, today: date, *, far: bool = True) -> date | None:
    try:
        found = date(year, month, day)
    except ValueError:
        return None
    if far and not today - timedelta(days=7) <= found <= today + timedelta(days=366):
        return None
    return found
