"""What a reply says, from its own text (above the quote): `unsubscribe` (an explicit request
that the writer be taken off the list), `out_of_office`, `not_interested`, `interested`, or
`other`. Rules, deterministic; measured on the labelled replies in tests/data/replies.txt.

An unsubscribe is a request about the writer and the mail: "remove me from your list",
"stop emailing me", "do not contact me". The same words about someone or something else
("do not contact Jim", "remove me from the CC", "stop by our office"), negated ("don't
remove me", "no need to unsubscribe me") or asked about ("how do I unsubscribe my
colleague?") are not, and a reply that is not an unsubscribe never suppresses an address.
"""

from __future__ import annotations

import enum
import re


class Intent(enum.StrEnum):
    INTERESTED = "interested"
    NOT_INTERESTED = "not_interested"
    OUT_OF_OFFICE = "out_of_office"
    UNSUBSCRIBE = "unsubscribe"
    OTHER = "other"


def _any(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


_MAIL = r"(?:e-?mails?|messages?|mail|communications?|spam|these|this)"
_VERB_TO_ME = (
    r"(?:e-?mail(?:ing)?|contact(?:ing)?|writ(?:e|ing) to|messag(?:e|ing)|mail(?:ing)?"
    r"|spam(?:ming)?)"
)

# Requests about the writer: each needs the writer ("me", "my address") or the mail itself.
_UNSUBSCRIBE = _any(
    r"\bunsubscribe(?: me)?\b(?! (?:my|him|her|them|from the newsletter)\b)",
    r"\bremove (?:me|my (?:e-?mail|address|e-?mail address|contact(?: details)?|details|data))\b"
    r"(?! from (?:the |this )?(?:cc|thread|chain|copy|call|meeting|invite|group chat|platform)\b)",
    r"\bdelete my (?:e-?mail|address|e-?mail address|data|details)\b",
    r"\btake me off\b(?! (?:the |this )?(?:cc|thread|chain|copy|call|invite)\b)",
    rf"\bstop (?:{_VERB_TO_ME}|send(?:ing)?) (?:me|us)\b",
    rf"\bstop send(?:ing)? (?:{_MAIL})\b",
    rf"\b(?:do not|don't|never) (?:{_VERB_TO_ME}) (?:me|us)\b",
    r"\b(?:do not|don't) (?:send|want) (?:me )?(?:any )?(?:more|further)\b",
    rf"\b(?:do not|don't) send me (?:{_MAIL}|anything)\b",
    r"\b(?:don't|do not) want to (?:be contacted|receive|hear)\b",
    r"\bno longer wish to (?:receive|be contacted|hear)\b",
    r"\bopt(?:-| )?(?:me )?out\b",
    rf"\bno more (?:{_MAIL})\b",
    r"\bcease all (?:communication|contact|e-?mails?)\b",
    r"\b(?:leave me alone)\b",
    # German, French, Spanish, Portuguese, Italian, Dutch.
    r"\b(?:abmelden|austragen|aus (?:ihrem|dem|eurem) verteiler)\b|\btragen sie mich\b.*\baus\b",
    r"\bkeine (?:weiteren )?(?:e-?mails?|nachrichten)\b",
    r"\b(?:me )?d[ée]sabonner\b|\bd[ée]sinscri(?:re|vez)\b|\bretirez[- ]moi\b|\bme retirer de\b",
    r"\bne plus (?:m'envoyer|me contacter|recevoir)\b",
    r"\b(?:dar(?:me)? de baja|denme de baja|darse de baja)\b",
    r"\bno me (?:envíe[ns]?|envíes|escriba[ns]?) más\b",
    r"\b(?:remova-me|descadastr(?:ar|e)|não me envie[m]? mais)\b",
    r"\b(?:cancellatemi|cancellami|disiscriv(?:i|ete)mi|non inviatemi più)\b",
    r"\b(?:afmelden|uitschrijven|verwijder (?:mij|me))\b",
)
# A sentence that is nothing but "stop" (or "please stop").
_BARE_STOP = re.compile(r"^\W*(?:please\s+)?stop(?:\s+please)?(?:\s+now)?\W*$", re.IGNORECASE)
# Words that make the request about something else, or not a request.
_NOT_A_REQUEST = _any(
    r"\b(?:don't|do not|no need to|won't|will not|not going to|please don't) "
    r"(?:remove|unsubscribe|take me off)\b",
    r"\bhow (?:do|can|would) (?:i|we|you) unsubscribe\b",
    r"\bshould (?:i|we) unsubscribe\b",
    r"\bunsubscrib(?:e|ing) (?:my|him|her|them"
    r"|from (?:our|the|a|an) (?:old )?(?:vendor|provider|newsletter))\b",
    r"\bunsubscribing from\b",
)
_SUBJECT_UNSUBSCRIBE = re.compile(
    r"^\W*(?:unsubscribe|remove(?: me)?(?: from .*)?|stop|opt[ -]?out)\W*$", re.IGNORECASE
)

_OUT_OF_OFFICE = _any(
    r"\bout of (?:the )?office\b",
    r"\b(?:on|taking) (?:annual |parental |maternity |paternity |sick )?"
    r"(?:leave|holiday|vacation)\b",
    r"\b(?:i am|i'm) (?:currently )?(?:away|travel+ing|offline|out sick|on business)\b",
    r"\baway from (?:my desk|the office)\b",
    r"\b(?:limited|intermittent|no) access to (?:my )?e-?mail\b",
    r"\bwill (?:be back|return|respond .* (?:on my return|when i'm back))\b",
    r"\battending a conference\b",
    r"\bnicht im büro\b|\babwesend\b",
    r"\babsente? du bureau\b|\ben congés?\b",
    r"\bfuera de la oficina\b|\bde vacaciones\b",
    r"\bfora do escritório\b|\bde férias\b",
    r"\bfuori ufficio\b|\bin ferie\b",
    r"\bafwezig\b|\bmet vakantie\b",
)

_NOT_INTERESTED = _any(
    r"\bnot interested\b|\bno interest\b|\bnot (?:a fit|for us|right now|now|something we)\b",
    r"\bno,? thanks?\b|\bno thank you\b|\bthanks,? but (?:no|we'll|i'm|this)\b|\bbut no\b",
    r"\bwe(?:'ll| will) pass\b|\bhard pass\b|\bsay no\b|^\W*no(?:pe)?\W*$",
    r"\b(?:already use|happy with|all set|stick with|under contract|built this in-house)\b",
    r"\bno (?:budget|need|plans to)\b|\b(?:don't|do not) (?:need|have budget)\b",
    r"\bnot (?:looking|in the market|a priority|buying)\b|\bisn't (?:something|a priority|for)\b",
    r"\b(?:doesn't|does not) apply\b|\bdon't think this is for us\b|\bnot something we'd\b",
    r"\b(?:decided|chose) to go with\b|\bwe stopped using\b",
    r"\bkein interesse\b|\bbrauchen wir nicht\b",
    r"\bpas intéressée?s?\b|\bnon merci\b",
    r"\bno (?:estamos interesados|me interesa|nos interesa)\b",
    r"\bnão (?:temos|tenho) interesse\b",
    r"\bnon (?:siamo|sono) interessat[oi]\b",
    r"\bgeen interesse\b",
)

_INTERESTED = _any(
    r"\binterest(?:ed|ing)\b|\bkeen\b|\bopen to\b|\bhappy to\b|\blooks? (?:like a fit|promising)\b",
    r"\b(?:let's|lets|can we|could we|shall we) "
    r"(?:talk|chat|set up|schedule|book|do it|meet|find)\b",
    r"\b(?:set up|schedule|book) (?:a |some )?(?:call|demo|meeting|time)\b|\ba demo\b",
    r"\bsend (?:me |it |over )?(?:more|the|a|some|it|your)\b|\bsend it over\b",
    r"\btell me more\b|\blearn more\b|\bhear more\b|\bpricing\b|\bquote\b|\bproposal\b",
    r"\b(?:are|when are) you (?:free|available)\b|\bavailability\b|\bcall me\b",
    r"\b(?:sounds|looks) (?:good|great|interesting)\b|\bgood timing\b|^\W*(?:yes|sure|ok)\b",
    r"\bwhat(?:'s| is| would) (?:the )?(?:next step|onboarding)\b|\bcase study\b",
    r"\binteressant\b|\bja,? gerne\b|\bintéressée?\b|\bplus d'informations\b",
    r"\bme interesa\b|\bmás información\b|\btenho interesse\b|\binteressat[oi]\b",
    r"\bklinkt goed\b|\bafspraak\b",
)


def _own_sentences(text: str) -> list[str]:
    """The reply's sentences (a line break or a sentence's end splits them); what a sentence
    quotes of another message after a colon stays with it."""
    parts = re.split(r"(?<=[.!?;])\s+|\n+", text)
    return [p.strip() for p in parts if p.strip()]


def asks_to_unsubscribe(text: str, subject: str = "") -> bool:
    """An explicit request by the writer to be taken off the list."""
    if _SUBJECT_UNSUBSCRIBE.match(subject.strip()):
        return not text.strip() or not _INTERESTED.search(text) or bool(_UNSUBSCRIBE.search(text))
    for sentence in _own_sentences(text):
        if _NOT_A_REQUEST.search(sentence):
            continue
        if _BARE_STOP.match(sentence):
            return True
        if not _UNSUBSCRIBE.search(sentence):
            continue
        if _OUT_OF_OFFICE.search(text) and re.search(
            r"\bin the meantime\b|\bat this address\b", sentence, re.IGNORECASE
        ):
            continue  # an absence note's "do not contact me here, write to …"
        return True
    return False


def read(text: str, subject: str = "") -> Intent:
    """The reply's intent (its own text: what is above the quote)."""
    if asks_to_unsubscribe(text, subject):
        return Intent.UNSUBSCRIBE
    if _OUT_OF_OFFICE.search(text) or _OUT_OF_OFFICE.search(subject):
        return Intent.OUT_OF_OFFICE
    if _NOT_INTERESTED.search(text):
        return Intent.NOT_INTERESTED
    if _INTERESTED.search(text):
        return Intent.INTERESTED
    return Intent.OTHER
