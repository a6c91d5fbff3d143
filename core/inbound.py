"""What arrives in a sender's inbox, classified: a reply, an automatic reply, a bounce (the
standard DSN of RFC 3464 and the free-form notices of real MTAs), or a complaint (ARF,
RFC 5965). Pure: the message's bytes in, a verdict out; the inbox daemon acts on it.

A bounce names each failed recipient with a status and the server's diagnostic, and is
*hard* only when the address does not exist or is gone (unknown user, unknown domain, moved,
a domain that accepts no mail). A full mailbox, a block, a policy or spam refusal, a
suspended account, a timeout are *soft*: the address may work another day, so it is not
suppressed.
"""

from __future__ import annotations

import email
import enum
import json
import re
from dataclasses import dataclass, field
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from typing import Any

from core import intent

MAX_BYTES = 10 * 2**20  # what is read of one message; the rest of a huge one is not needed
_TEXT_CHARS = 20_000  # of each text part
# Our messages have one recipient each: a genuine report about them names one or a few. A
# report naming more is read for its first MAX_RECIPIENTS (the rest counted, not read), so
# reading it costs time linear in its size whatever it names.
MAX_RECIPIENTS = 50
# MIME nesting a message may have; deeper is not mail anyone sends (and would exhaust the
# parser's recursion): the message is unreadable.
MAX_DEPTH = 40


class Unreadable(ValueError):
    """A message the classifier refuses to read (nesting, structure); says why."""


@dataclass(frozen=True, slots=True)
class Unread:
    """The verdict on a message that could not be read, and why."""

    reason: str


class Kind(enum.StrEnum):
    REPLY = "reply"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    NOTICE = "notice"  # from a mail system, about no recipient we could name: no action


@dataclass(frozen=True, slots=True)
class Failure:
    """One recipient a bounce says could not be reached."""

    recipient: str
    hard: bool
    reason: str  # user_unknown, host_unknown, moved, not_accept, mailbox_full, blocked, ...
    status: str | None  # the enhanced status code, e.g. 5.1.1
    diagnostic: str


@dataclass(frozen=True, slots=True)
class Inbound:
    kind: Kind
    message_id: str | None
    from_address: str
    subject: str
    # Message-IDs this message refers to: In-Reply-To and References, and for a bounce or a
    # complaint those of the original message it carries.
    refers_to: tuple[str, ...] = ()
    failures: tuple[Failure, ...] = ()
    complained: tuple[str, ...] = ()  # the addresses a complaint is about
    unsubscribe: bool = False  # a reply that asks to be taken off the list
    body: str = field(default="", repr=False)  # the reply's own text (quotes removed)
    unread: int = 0  # recipients a report names beyond MAX_RECIPIENTS, not read
    intent: str = ""  # a reply's (core/intent.py)


# --- helpers -----------------------------------------------------------------------------

_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_MSGID = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_INLINE_ID = re.compile(r"^Message-ID:\s*(<[^>\s]+>)", re.IGNORECASE | re.MULTILINE)
_REPLY_CODE = re.compile(r"(?<!\d)([45]\d\d)(?:[ :-]|$)")


def _text(value: object) -> str:
    return " ".join(str(value or "").split())


def _header(msg: Message, name: str) -> str:
    raw = msg.get(name)
    if raw is None:
        return ""
    try:
        decoded = email.header.decode_header(str(raw))
        return _text(
            "".join(
                part.decode(charset or "ascii", "replace") if isinstance(part, bytes) else part
                for part, charset in decoded
            )
        )
    except (LookupError, ValueError):
        return _text(raw)


def _ids(value: str) -> list[str]:
    return [f"<{m}>" for m in _MSGID.findall(value)]


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload[: _TEXT_CHARS * 4].decode(charset, "replace")[:_TEXT_CHARS]
        except LookupError:
            return payload[: _TEXT_CHARS * 4].decode("utf-8", "replace")[:_TEXT_CHARS]
    if isinstance(payload, str):
        return payload[:_TEXT_CHARS]
    return ""


def _html_text(html: str) -> str:
    html = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", html)
    html = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>", "\n", html)
    return re.sub(r"<[^>]+>", " ", html)


def _ctype(part: Message) -> str:
    """The part's content type, also when a sender left out the ";" before its parameters."""
    return part.get_content_type().split()[0]


def _parts(msg: Message) -> list[Message]:
    """Every part, depth first (as Message.walk, without its recursion)."""
    out: list[Message] = []
    stack = [msg]
    while stack:
        part = stack.pop()
        out.append(part)
        if part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                stack.extend(reversed([p for p in payload if isinstance(p, Message)]))
    return out


def _depth(msg: Message) -> int:
    deepest = 0
    stack = [(msg, 0)]
    while stack:
        part, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend((p, level + 1) for p in payload if isinstance(p, Message))
    return deepest


def _embedded(msg: Message) -> Message | None:
    """The original message a bounce or complaint carries (headers at least)."""
    for part in _parts(msg):
        ctype = _ctype(part)
        if ctype in ("message/rfc822", "message/global") and part.is_multipart():
            inner = part.get_payload(0)
            if isinstance(inner, Message):
                return inner
        if ctype in ("text/rfc822-headers", "message/rfc822-headers", "message/global-headers"):
            return email.message_from_string(_decoded(part), policy=compat32)
    return None


def _lower_address(value: str) -> str:
    return value.strip().strip("<>").strip().lower()


# --- hard or soft ------------------------------------------------------------------------

# The server says plainly that there is no such mailbox or domain.
_PLAINLY = [
    r"user(?:name)? (?:is )?unknown",
    r"unknown (?:user|recipient|mailbox)",
    r"no such (?:user|recipient|mailbox)",
    r"recipient address rejected: (?:user unknown|unknown user|access denied|no such)",
    r"invalid recipient",
    r"invalid (?:final delivery )?userid",
    r"not listed in (?:domino|the|public)",
    r"check if (?:the )?address is correct",
    r"(?:address|recipient|mailbox) (?:wasn't|was not) found",
    r"address (?:couldn't|could not) be found",
    r"\baddress not found",
    r"mailbox unavailable",
    r"does not exist",
    r"recipient (?:name )?is not recognized",
    r"no valid recipients",
]

# (reason, hard, patterns), first match wins; the soft reasons that can look like an unknown
# user ("user unknown or blocked") come first.
_REASONS: list[tuple[str, bool, re.Pattern[str]]] = [
    (reason, hard, re.compile("|".join(patterns), re.IGNORECASE))
    for reason, hard, patterns in (
        (
            "mailbox_full",
            False,
            [
                r"mailbox (?:is )?full",
                r"over ?quota",
                r"quota exceeded",
                r"exceeded (?:the )?(?:storage|quota)",
                r"mailbox size limit",
                r"insufficient (?:disk )?(?:space|storage)",
                r"mail ?box (?:has )?exceeded",
                r"user(?:'s)? (?:mailbox|disk) (?:is )?full",
                r"too much mail",
                r"storage allocation",
                r"(?:is|are) over (?:their|the) (?:storage|quota)",
                r"full mailbox",
                r"mailfolder is full",
                r"disk quota",
                r"exceed(?:s|ed)? .*quota",
            ],
        ),
        (
            "user_unknown",
            True,
            _PLAINLY,
        ),
        (
            "host_unknown",
            True,
            [
                r"couldn't find a mail exchanger",
                r"domain is not reachable",
                r"host or domain name not found",
                r"not accepting (?:network )?messages",
            ],
        ),
        (
            "spam",
            False,
            [
                r"\bspam\b",
                r"junk mail",
                r"unsolicited",
                r"content (?:was )?rejected",
                r"virus",
                r"\bphish",
                r"suspicious",
                r"bulk mail",
                r"message (?:content )?(?:was )?(?:refused|rejected) (?:due|because)",
            ],
        ),
        (
            "blocked",
            False,
            [
                r"blocked",
                r"blacklist",
                r"block ?list",
                r"\bdenied\b",
                r"\brbl\b",
                r"spamhaus",
                r"reputation",
                r"not allowed to send",
                r"access denied",
                r"client host rejected",
                r"sender (?:address )?rejected",
                r"refused to talk",
                r"poor reputation",
                r"banned",
                r"dnsbl",
                r"blacklisted",
                r"\bptr\b",
                r"reverse dns",
                r"relay(?:ing)? (?:access )?denied",
                r"relay not permitted",
                r"not permitted to relay",
                r"authentication required",
                r"dmarc",
                r"\bspf\b",
                r"dkim",
                r"policy",
                r"rate limit",
                r"too many (?:connections|messages|recipients)",
                r"try again later",
                r"recipient preferences",
            ],
        ),
        (
            "suspended",
            False,
            [
                r"disabled",
                r"suspended",
                r"inactive",
                r"deactivated",
                r"account (?:is )?locked",
                r"not active",
                r"closed",
                r"expired account",
                r"account expired",
                r"frozen",
            ],
        ),
        ("too_big", False, [r"too (?:big|large)", r"size (?:limit|exceeds)", r"exceeds.*size"]),
        (
            "sender_rejected",
            False,
            [
                r"sender address",
                r"domain of sender",
                r"sender domain",
                r"sender verify",
                r"envelope sender",
                r"from address",
                r"return path",
            ],
        ),
        (
            "network",
            False,
            [
                r"try again",
                r"malformed",
                r"temporar",
                r"connection (?:refused|reset|timed|lost)",
                r"network",
                r"no route",
                r"unreachable",
            ],
        ),
        (
            "host_unknown",
            True,
            [
                r"host (?:or domain name )?(?:not found|unknown)",
                r"unknown host",
                r"domain (?:not found|does not exist|unknown)",
                r"no such domain",
                r"name service error",
                r"unrouteable (?:mail )?domain",
                r"nxdomain",
                r"no smtp service",
                r"domain name not found",
                r"host not found",
                r"unknown domain",
                r"no mx (?:record|host)",
                r"bad destination (?:system|host)",
                r"unroutable address",
                r"domain (?:is )?not (?:valid|exist)",
                r"hostname lookup failed",
                r"host lookup failed",
                r"domain could not be found",
                r"no such host",
                r"not (?:a )?known (?:host|domain)",
            ],
        ),
        (
            "moved",
            True,
            [
                r"has moved",
                r"no longer (?:with|at|valid|available|here)",
                r"address (?:has )?changed",
            ],
        ),
        ("not_accept", True, [r"null mx", r"does not accept (?:any )?mail", r"accepts no mail"]),
        (
            "user_unknown",
            True,
            [
                r"user(?:name)? (?:is )?unknown",
                r"unknown (?:user|recipient|local|address|mailbox|e-?mail)",
                r"no such (?:user|recipient|mailbox|address|account|local user|person)",
                r"(?:user|recipient|mailbox|address|account|addressee)"
                r"(?: address)? (?:was )?not found",
                r"does(?:n't| not) (?:exist|have an? (?:\w+ )?account)",
                r"not exist",
                r"non-?existent",
                r"invalid (?:recipient|mailbox|address|user|e-?mail)",
                r"(?:recipient|user|mailbox|address) (?:is )?invalid",
                r"no mailbox",
                r"mailbox (?:not found|unavailable|does not exist|is unavailable)",
                r"unknown or illegal alias",
                r"not a valid (?:mailbox|recipient|user)",
                r"no (?:such )?account",
                r"undeliverable address",
                r"addressee unknown",
                r"unrouteable address",
                r"(?:recipient|address) rejected\.?\s*$",  # nothing more said: Postfix's RCPT
                r"no longer exists",
                r"bad (?:destination )?mailbox",
                r"user not local",
                r"rejected: user",
                r"not our customer",
                r"unknown$",
                r"couldn't be found",
                r"wasn't found",
                r"is not a known user",
                r"no such e-?mail",
                r"user doesn't have",
                r"unavailable user",
            ],
        ),
        (
            "expired",
            False,
            [
                r"expired",
                r"retry (?:time(?:out)?|period)",
                r"too long",
                r"timed? ?out",
                r"giving up",
                r"gave up",
            ],
        ),
    )
]

_SAYS_PLAINLY = re.compile("|".join(_PLAINLY), re.IGNORECASE)
_HARD_STATUS = {"5.1.1": "user_unknown", "5.1.2": "host_unknown", "5.1.6": "moved",
                "5.1.10": "not_accept", "5.1.3": "user_unknown", "5.4.4": "host_unknown",
                "5.1.0": "user_unknown"}  # fmt: skip
# About the sender or the mailbox's state, whatever the words say: never the address itself.
_SOFT_STATUS = re.compile(r"^[45]\.(?:1\.[78]|2\.0)$")


_COMMAND_PHRASES = [
    (
        re.compile(
            r"end of data|after data|data command|command data|message (?:body|content)|"
            r"smtp command\W*data\b",
            re.I,
        ),
        "DATA",
    ),
    (
        re.compile(
            r"rcpt to|rcpt command|recipient command|does not like recipient|smtp:rcpt\b", re.I
        ),
        "RCPT",
    ),
    (re.compile(r"mail from|mail command", re.I), "MAIL"),
]


_TRANSCRIPT_REPLY = re.compile(r"<<<\s*(\d{3})([ -]?)")


def refused_command(text: str) -> str | None:
    """The SMTP command the server refused, as far as a bounce says: from a transcript
    (>>> commands and <<< replies; pipelined commands are answered in order), or words
    such as "in reply to end of DATA command" and "after RCPT TO"."""
    commands: list[str] = []
    replies: list[str] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if line.startswith(">>>"):
            commands.append(line[3:].strip().split(":")[0].split(" ")[0].upper())
        elif (code := _TRANSCRIPT_REPLY.match(line)) and code.group(2) != "-":
            replies.append(code.group(1))  # the last line of a (multi-line) reply
    # Replies answer the commands in order, the last reply the last command; with pipelining
    # a transcript may show only the last command (DATA) after the replies to the ones before
    # it: a refusal answering a command it does not show was one of those (RCPT).
    failing = next((i for i, reply in enumerate(replies) if reply[0] in "45"), None)
    if failing is not None and commands:
        at = failing - (len(replies) - len(commands))
        command = commands[at] if at >= 0 else "RCPT"
        return "RCPT" if command.startswith("RCPT") else command
    for pattern, command in _COMMAND_PHRASES:
        if pattern.search(text):
            return command
    return None


_UNSET = "_unset_"


def verdict(
    status: str | None,
    diagnostic: str,
    stage: str = "",
    address: str = "",
    *,
    answer: bool = False,
    command: str | None = _UNSET,
) -> tuple[str, bool]:
    """(reason, hard) for one failed recipient, `address`; `stage` is the bounce's text
    about the SMTP exchange (`refused_command` reads it), or `command` the refused command
    when already known; `answer`: `diagnostic` is the receiving server's answer (a report's
    Diagnostic-Code), not the reporting MTA's words."""
    found = next(((r, h) for r, h, pattern in _REASONS if pattern.search(diagnostic)), None)
    if found is None and status in _HARD_STATUS:
        found = (_HARD_STATUS[status], True)
    reason, hard = found or ("", False)
    if not reason:
        return ("temporary" if status and status.startswith("4") else "other"), False
    if hard and status is not None and status.startswith("4"):
        return reason, False  # the server will think again
    if hard and status is not None and _SOFT_STATUS.match(status):
        return "rejected", False
    if hard and reason == "user_unknown":
        if command == _UNSET:
            command = refused_command(stage or diagnostic)
        return _unknown_user(status, diagnostic, command, address, answer=answer)
    return reason, hard


def _unknown_user(
    status: str | None, diagnostic: str, command: str | None, address: str, *, answer: bool
) -> tuple[str, bool]:
    """Words such as "no such user" are not enough for a hard bounce: filters say them too,
    about content, and in answers to a whole message. They are the address's verdict when
    the status names the address (X.1.x), when the server gave them in answer to RCPT TO,
    when its answer names the recipient ("550 <a@b>: User unknown", "a@b... No such user"),
    or when they are the reporting MTA's own words about the recipient (no server answer
    quoted). A server's answer that is none of these is a filter's, soft."""
    if command in ("MAIL", "HELO", "EHLO"):
        return "rejected", False  # refused before the recipient was named
    if status is not None and _ABOUT_ADDRESS.match(status):
        return "user_unknown", True  # the status names the address, whatever the stage
    if command == "RCPT" or (command != "DATA" and address and _answer_names(address, diagnostic)):
        return "user_unknown", True
    about_else = status is not None and status.split(".")[1] in ("2", "3", "6", "7")
    if command == "DATA" or about_else:
        return "filtered", False
    if not answer and _SAYS_PLAINLY.search(diagnostic) and not _REPLY_CODE.search(diagnostic):
        return "user_unknown", True
    return "filtered", False


# Statuses about the recipient's address (RFC 3463 X.1.x), but those about the sender's.
_ABOUT_ADDRESS = re.compile(r"^5\.1\.(?!7$|8$)\d+$")


def _answer_names(address: str, diagnostic: str) -> bool:
    """Whether a server's answer in `diagnostic` names `address` before its words, as
    Postfix ("550 <a@b>: …") and sendmail ("550 a@b... …") answer RCPT TO."""
    return bool(
        re.search(
            r"(?<!\d)[45]\d\d[ :-]+(?:[245]\.\d{1,3}\.\d{1,3}\s+)?<?"
            + re.escape(address)
            + r">?(?:\.\.\.|:)",
            diagnostic,
            re.IGNORECASE,
        )
    )


def _status_in(text: str) -> str | None:
    m = _STATUS.search(text)
    if m is not None and m.group(1) != "2":
        return ".".join(m.groups())
    code = _REPLY_CODE.search(text)
    if code is not None:
        return f"{code.group(1)[0]}.0.0"
    return None


# --- complaints --------------------------------------------------------------------------


_COMPLAINT_SUBJECT = re.compile(r"complaint about message|abuse report", re.IGNORECASE)


def _complaint(msg: Message) -> list[str] | None:
    report = next((p for p in _parts(msg) if _ctype(p) == "message/feedback-report"), None)
    original = _embedded(msg)
    if report is None:
        if _COMPLAINT_SUBJECT.search(_header(msg, "Subject")) and original is not None:
            # Hotmail's and others' reports without a feedback-report part: the complaint
            # is about the message attached.
            return [_lower_address(a) for _, a in getaddresses(original.get_all("To", [])) if a]
        return None
    fields = _fields(report)
    found = [
        _lower_address(v)
        for key in ("original-rcpt-to", "removal-recipient")
        for v in fields.get(key, [])
        if "@" in v
    ]
    if not found and original is not None:
        found = [_lower_address(a) for _, a in getaddresses(original.get_all("To", [])) if a]
    return found


def _fields(part: Message) -> dict[str, list[str]]:
    """The `Name: value` fields of a report part (however the parser stored it)."""
    text = _report_text(part)
    out: dict[str, list[str]] = {}
    for block in _blocks(text):
        for key, value in block:
            out.setdefault(key, []).append(value)
    return out


def _report_text(part: Message) -> str:
    """A report part's text as sent (the parser may have split it into header blocks, and
    put what did not look like headers in their bodies)."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _decoded(part)
    text = ""
    for block in payload:
        if isinstance(block, Message):
            try:
                text += block.as_string() + "\n"
            except (LookupError, ValueError, TypeError):
                text += "".join(f"{k}: {v}\n" for k, v in block.items()) + "\n"
    return text


def _blocks(text: str) -> list[list[tuple[str, str]]]:
    """Header-like blocks separated by blank lines (or by a recipient field again, when a
    report runs its recipients' blocks together), continuation lines folded in."""
    blocks: list[list[tuple[str, str]]] = [[]]
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if blocks[-1]:
                blocks.append([])
            continue
        if line[:1] in (" ", "\t") and blocks[-1]:
            key, value = blocks[-1][-1]
            blocks[-1][-1] = (key, f"{value} {line.strip()}")
            continue
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key and " " not in key:
            seen = {k for k, _ in blocks[-1]}
            if key in _RECIPIENT_FIELDS and key in seen:  # a recipient's block not set apart
                blocks.append([])
            blocks[-1].append((key, value.strip()))
    return [b for b in blocks if b]


_RECIPIENT_FIELDS = ("final-recipient", "original-recipient")


# --- Amazon SES notifications (JSON, by e-mail through SNS) -------------------------------


def _ses_notification(text: str) -> dict[str, Any] | None:
    """An Amazon SES notification: as SES sends it by email, or inside the SNS envelope
    ({"Type": "Notification", "Message": "<the notification as a JSON string>"})."""
    decoder = json.JSONDecoder()
    for start in (text.find('{"notificationType"'), text.find("{")):
        if start < 0:
            continue
        try:
            data, _ = decoder.raw_decode(text[start:])
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("Message"), str):
            try:
                data = json.loads(data["Message"])
            except ValueError:
                continue
        if isinstance(data, dict) and "notificationType" in data:
            return data
    return None


def _ses(msg: Message) -> Inbound | None:
    text = "\n".join(_decoded(p) for p in _parts(msg) if _ctype(p) == "text/plain")
    text = text.replace("!\n ", "")  # a long line folded on the way
    data = _ses_notification(text)
    if data is None:
        return None
    kind, sender = data.get("notificationType"), parseaddr(_header(msg, "From"))[1].lower()
    subject = _header(msg, "Subject")
    mail = data.get("mail")
    common = mail.get("commonHeaders") if isinstance(mail, dict) else None
    refers = tuple(_ids(str(common.get("messageId", "")))) if isinstance(common, dict) else ()
    if kind == "Complaint":
        people = data.get("complaint", {}).get("complainedRecipients", [])
        found = list(dict.fromkeys(
            str(r.get("emailAddress", "")).lower() for r in people if isinstance(r, dict)
        ))  # fmt: skip
        return Inbound(Kind.COMPLAINT, None, sender, subject, refers,
                       complained=tuple(found[:MAX_RECIPIENTS]),
                       unread=max(0, len(found) - MAX_RECIPIENTS))  # fmt: skip
    if kind == "Bounce":
        bounce = data.get("bounce", {})
        permanent = bounce.get("bounceType") == "Permanent"
        failures = []
        named = [r for r in bounce.get("bouncedRecipients", []) if isinstance(r, dict)]
        for r in named[:MAX_RECIPIENTS]:
            diagnostic = str(r.get("diagnosticCode", "")) or str(bounce.get("bounceSubType", ""))
            status = str(r.get("status", "")) or None
            reason, hard = verdict(status, diagnostic, answer=True)
            failures.append(Failure(str(r.get("emailAddress", "")).lower(), hard and permanent,
                                    reason, status, diagnostic[:1000]))  # fmt: skip
        return Inbound(Kind.BOUNCE, None, sender, subject, refers, failures=tuple(failures),
                       unread=max(0, len(named) - MAX_RECIPIENTS))  # fmt: skip
    return Inbound(Kind.NOTICE, None, sender, subject)


# --- DSNs (RFC 3464) ---------------------------------------------------------------------


def _recipient(fields: dict[str, str]) -> str:
    """The failed address of a report's block: Final-Recipient when it is a plain address,
    else Original-Recipient, else an address inside the final one (a pipe's command line);
    a source route ("@relay:user@host") is not an address to suppress."""
    values = [fields.get(k, "") for k in ("final-recipient", "original-recipient")]
    addresses = [_lower_address(v.rpartition(";")[2] if ";" in v else v) for v in values]
    plain = [a for a in addresses if re.fullmatch(r"[^\s@:|<>;,]+@[^\s@:|<>;,]+", a)]
    if plain:
        return plain[0]
    inside = _ADDRESS.search(addresses[0])
    return inside.group(0).lower() if inside is not None and ":" not in addresses[0] else ""


def _dsn(msg: Message) -> tuple[list[Failure], int] | None:
    """The failed recipients of a delivery-status report (at most MAX_RECIPIENTS) and how
    many more it names; None when the message has no such report."""
    part = next(
        (
            p
            for p in _parts(msg)
            if _ctype(p)
            in ("message/delivery-status", "message/global-delivery-status", "text/delivery-status")
        ),
        None,
    )
    text = _report_text(part) if part is not None else _inline_report(msg)
    if not text:
        return None
    failures: list[Failure] = []
    seen: set[str] = set()
    unread = 0
    about: _Notice | None = None  # the notice's text, read once for every recipient
    for block in _blocks(text):
        fields = dict(block)
        address = _recipient(fields)
        if not address or address in seen:
            continue
        action = (
            fields.get("action", "failed").lower().split()[0] if fields.get("action") else "failed"
        )
        if action in ("delivered", "relayed", "expanded"):
            continue
        seen.add(address)
        if len(failures) >= MAX_RECIPIENTS:
            unread += 1
            continue
        about = about or _Notice(_transcript(msg))
        status = None
        if m := _STATUS.search(fields.get("status", "")):
            status = ".".join(m.groups())
        diagnostic = _text(fields.get("diagnostic-code", "")).partition(";")[2].strip() or _text(
            fields.get("diagnostic-code", "")
        )
        answer = bool(diagnostic)
        if not diagnostic:  # some MTAs give the server's answer only in the notice's text
            diagnostic = about.line_about(address)
        if status is None or status.endswith(".0.0"):
            status = _status_in(diagnostic) or status
        stage = " ".join(fields.get(k, "") for k in ("x-postfix-sender", "x-actual-recipient"))
        reason, hard = verdict(
            status, diagnostic, stage, address, answer=answer, command=about.command(stage)
        )
        if fields.get("diagnostic-code", "").partition(";")[0].strip().lower() == "x-unix":
            reason, hard = "mailer_error", False  # the local delivery program's failure
        if action == "delayed":
            hard = False
        failures.append(Failure(address, hard, reason, status, diagnostic[:1000]))
    return failures, unread


class _Notice:
    """A bounce notice's text, with what is asked of it for each recipient worked out once
    (a report naming many recipients costs time linear in its size, not quadratic)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._command: str | bool | None = False  # False: not worked out yet
        self._lines: dict[str, str] | None = None
        self._paragraphs: dict[str, str] | None = None

    def command(self, stage: str = "") -> str | None:
        """The refused SMTP command: from `stage` (a report's own fields) when they say,
        else from the notice's text."""
        if stage.strip() and (found := refused_command(stage)) is not None:
            return found
        if self._command is False:
            self._command = refused_command(self.text)
        return self._command if isinstance(self._command, str) else None

    def line_about(self, address: str) -> str:
        """What the text says of `address`: the rest of a line that starts with it (as in
        "a@b: 550 …"), else the paragraph that names it with the heading above it."""
        if self._lines is None:
            self._lines = {}
            for line in self.text.splitlines():
                head, _, rest = line.strip().partition(":")
                if rest.strip() and "@" in head:
                    self._lines.setdefault(_lower_address(head), rest.strip())
        if address in self._lines:
            return self._lines[address]
        if self._paragraphs is None:
            self._paragraphs = {}
            paragraphs = [p for p in re.split(r"\n\s*\n", self.text) if p.strip()]
            for i, paragraph in enumerate(paragraphs):
                for m in _ADDRESS.finditer(paragraph):
                    self._paragraphs.setdefault(
                        m.group(0).lower(),
                        _text(" ".join(paragraphs[max(0, i - 1) : i + 1]))[:1000],
                    )
        return self._paragraphs.get(address, "")


_REPORT_START = re.compile(r"^(?:Reporting-MTA|Final-Recipient):", re.IGNORECASE | re.MULTILINE)


def _inline_report(msg: Message) -> str:
    """The delivery-status fields of a report whose MIME structure was lost on the way (its
    parts run together as text) or that was written into the notice's text, from the first
    report field on."""
    if msg.is_multipart():
        plain = next((p for p in _parts(msg) if _ctype(p) == "text/plain"), None)
        text = _decoded(plain) if plain is not None else ""  # a report given as the notice's text
    else:
        text = _decoded(msg)
    start = _REPORT_START.search(text)
    return text[start.start() :] if start is not None and "final-recipient" in text.lower() else ""


def _transcript(msg: Message) -> str:
    """What a bounce's text says about the SMTP exchange (e.g. a transcript with >>> DATA)."""
    return "\n".join(_decoded(p) for p in _parts(msg) if _ctype(p) in ("text/plain", "text/html"))


# --- free-form bounces -------------------------------------------------------------------

_BOUNCE_FROM = re.compile(r"mailer-daemon|post_?master|mail delivery|mail ?administrator|mdaemon",
                          re.IGNORECASE)  # fmt: skip
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (?:status|failure|failed|notification|problem|has failed)|"
    r"returned mail|failure notice|mail delivery|could not be delivered|non[- ]?delivery|"
    r"not delivered|delivery report|rejected|bounce|mail system error|nondeliverable|"
    r"delivery unsuccessful|failed delivery|returned to sender|unable to deliver|"
    r"permanent error|mail failure|warning: could not|error sending",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(
    r"^(?:-+ ?(?:Below this line is a copy|original message|This is a copy|Original message)|"
    r"------ This is a copy of the message|Content-Type: message/rfc822|"
    r"-{2,}\s*(?:The )?[Oo]riginal message|\s*--- Original message ---|"
    r"Message headers follow|-+ ?Returned message|"
    r"The original message (?:was (?!received)|headers)|"
    r".*(?:message text|original message|unsent message|returned message|"
    r"copy of the (?:original )?message) follows|"
    r"(?:Received: from|Return-Path:) )",
    re.MULTILINE | re.IGNORECASE,
)


def _looks_like_bounce(msg: Message) -> bool:
    sender = _header(msg, "From")
    return bool(
        (
            _header(msg, "Return-Path") in ("<>", "")
            and (_BOUNCE_FROM.search(sender) or _BOUNCE_SUBJECT.search(_header(msg, "Subject")))
        )
        or _BOUNCE_FROM.search(parseaddr(sender)[1].partition("@")[0])
        or (msg.get_content_type() == "multipart/report")
        or (_BOUNCE_SUBJECT.search(_header(msg, "Subject")) and _BOUNCE_FROM.search(sender))
    )


def _body_text(msg: Message) -> str:
    """The notice's own words: its first text part (HTML as text), up to the copy of the
    original message."""
    for part in _parts(msg):
        if part.is_multipart():
            continue
        # A multipart whose parts could not be told apart (its boundary lost) is read as text.
        ctype = "text/plain" if part.get_content_maintype() == "multipart" else _ctype(part)
        if ctype in ("message/rfc822", "text/rfc822-headers"):
            break
        if ctype in ("text/plain", "text/html"):
            text = _decoded(part)
            if ctype == "text/html":
                text = _html_text(text)
            if m := _SEPARATOR.search(text):
                text = text[: m.start()]
            if text.strip():
                return text
    return ""


_LINE_RECIPIENT = re.compile(r"^\s*<([^<>\s@]+@[^<>\s@]+\.[^<>\s@]+)>:", re.MULTILINE)
_RCPT_LINE = re.compile(r"^\s*RCPT TO:\s*<?([^<>\s@]+@[^<>\s@]+\.[^<>\s@]+?)>?\s*$",
                        re.MULTILINE | re.IGNORECASE)  # fmt: skip
_NOT_RECIPIENT_BEFORE = re.compile(r"(?:contact|\bfrom:?|generated from|expanded from)\s*\(?<?$")
_ID_BEFORE = re.compile(r"(?:message-?id|msg-?id|queue-?id|\bid)\s*[:=]?\s*<?\s*$")


def _freeform(msg: Message) -> tuple[list[Failure], int]:
    """The failed recipients a notice's own words name (at most MAX_RECIPIENTS) and how many
    more it names."""
    text = _body_text(msg)
    named = [a.lower() for _, a in getaddresses(msg.get_all("X-Failed-Recipients", [])) if "@" in a]
    ours = {
        _lower_address(a) for _, a in getaddresses(msg.get_all("To", []) + msg.get_all("From", []))
    }
    original = _embedded(msg)
    if original is not None:
        ours |= {_lower_address(a) for _, a in getaddresses(original.get_all("From", []))}
    found: list[tuple[str, int]] = []
    listed: set[str] = set()
    for m in _ADDRESS.finditer(text):
        address = m.group(0).lower().rstrip(".")
        local = address.partition("@")[0]
        before = text[max(0, m.start() - 40) : m.start()].lower()
        if address in ours or _BOUNCE_FROM.search(local) or local in ("root", "noreply"):
            continue
        if _ID_BEFORE.search(before) or _NOT_RECIPIENT_BEFORE.search(before):
            continue  # a Message-ID, a contact, the sender, or the address an alias came from
        if address not in listed:
            listed.add(address)
            found.append((address, m.start()))
    # Postfix and qmail begin a line with each failed recipient: "<a@b>: host said ...".
    lined = list(dict.fromkeys(m.group(1).lower() for m in _LINE_RECIPIENT.finditer(text)))
    lined = lined or list(dict.fromkeys(m.group(1).lower() for m in _RCPT_LINE.finditer(text)))
    if named or lined:  # Exim names them in a header
        lowered = text.lower()
        found = [(a, max(lowered.find(a), 0)) for a in (named or lined)[:MAX_RECIPIENTS]]
    if not found and original is not None:
        found = [(_lower_address(a), 0) for _, a in getaddresses(original.get_all("To", [])) if a]
        found = [f for f in found if f[0] not in ours]
    if not found:  # the copy of the original inline, after the notice's own words
        whole = "\n".join(_decoded(p) for p in _parts(msg) if _ctype(p) == "text/plain")
        if to := re.search(r"^To:\s*(.+)$", whole[len(text) :], re.MULTILINE):
            found = [(_lower_address(a), 0) for _, a in getaddresses([to.group(1)]) if "@" in a]
            found = [f for f in found if f[0] not in ours]
    unread = max(0, len(dict.fromkeys(named or lined or [a for a, _ in found])) - MAX_RECIPIENTS)
    found = found[:MAX_RECIPIENTS]
    transcript = _transcript(msg) if found else ""
    failures = []
    for i, (address, at) in enumerate(found):
        # The words about this recipient: from it to the next recipient (or a few lines).
        end = found[i + 1][1] if i + 1 < len(found) and found[i + 1][1] > at else at + 1200
        near = _text(text[at:end]) if at or text else ""
        # sendmail's line for each recipient ("554 <a@b>... 550 Host unknown") says it all
        own = re.search(r"^\s*(?:[45]\d\d\s+)?<" + re.escape(address) + r">\.\.\.\s*(\S.*)$",
                        text, re.MULTILINE | re.IGNORECASE)  # fmt: skip
        context = (own.group(1) if own else near) or _text(text)
        status = _status_in(context) or _status_in(_text(text))
        stage = _session_about(address, transcript)
        reason, hard = verdict(status, context, stage, address)
        if reason in ("other", "temporary") and near:
            reason, hard = verdict(status, _text(text), stage, address)
        failures.append(Failure(address, hard, reason, status, context[:1000]))
    return failures, unread


def _session_about(address: str, transcript: str) -> str:
    """The part of a transcript about `address`: sendmail writes one "While talking to
    <host>:" section per server, each with its own commands and replies."""
    sections = re.split(r"^.*while talking to .*$", transcript, flags=re.MULTILINE | re.IGNORECASE)
    about = [s for s in sections[1:] if address in s.lower()]
    return about[0] if len(sections) > 2 and about else transcript


# --- automatic replies and unsubscribe requests ------------------------------------------

_AUTO_SUBJECT = re.compile(
    r"^(?:auto(?:matic)?[ -]?(?:reply|response|answer)|out of (?:the )?office|autoreply|"
    r"abwesenheit|absence|réponse automatique|respuesta automática|risposta automatica|"
    r"i am (?:currently )?(?:out|away)|on vacation|vacation|away from|ooo\b|auto:)",
    re.IGNORECASE,
)


def _automatic(msg: Message) -> bool:
    auto = _header(msg, "Auto-Submitted").lower()
    if auto and auto != "no":
        return True
    if any(msg.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Autoresponder")):
        return True
    if _header(msg, "Precedence").lower() in ("auto_reply", "auto-reply"):
        return True
    if _header(msg, "X-Auto-Response-Suppress") and _AUTO_SUBJECT.search(_header(msg, "Subject")):
        return True
    return bool(_AUTO_SUBJECT.search(_header(msg, "Subject")))


def _own_text(msg: Message) -> str:
    """A reply's own words: its text without the quoted message below them."""
    text = ""
    for part in _parts(msg):
        if _ctype(part) == "text/plain":
            text = _decoded(part)
            break
        if _ctype(part) == "text/html" and not text:
            text = _html_text(_decoded(part))
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if (
            line.startswith(">")
            or re.match(r"^On .+wrote:\s*$", line)
            or line.startswith(("-----Original Message-----", "From: ", "________________"))
        ):
            break
        lines.append(line)
    return "\n".join(lines).strip()


# --- the verdict -------------------------------------------------------------------------


def classify(raw: bytes) -> Inbound:
    """What `raw` (one message as received) is."""
    try:
        msg = email.message_from_bytes(raw[:MAX_BYTES], policy=compat32)
    except RecursionError:  # the parser recurses per level of nesting
        raise Unreadable(f"MIME parts nested deeper than {MAX_DEPTH}") from None
    if _depth(msg) > MAX_DEPTH:
        raise Unreadable(f"MIME parts nested deeper than {MAX_DEPTH}")
    own_ids = _ids(_header(msg, "Message-ID"))
    message_id = own_ids[0] if own_ids else None
    sender = parseaddr(_header(msg, "From"))[1].lower()
    subject = _header(msg, "Subject")
    refers = _ids(_header(msg, "In-Reply-To")) + _ids(_header(msg, "References"))
    original = _embedded(msg)
    carried = _ids(_header(original, "Message-ID")) if original is not None else []
    if not carried:  # a copy of the original inline in the text
        whole = "\n".join(_decoded(p) for p in _parts(msg) if _ctype(p) == "text/plain")
        carried = [i for i in _ids(" ".join(_INLINE_ID.findall(whole))) if i != message_id]

    if (notification := _ses(msg)) is not None:
        return notification
    complained = _complaint(msg)
    if complained is not None:
        complained = list(dict.fromkeys(complained))
        return Inbound(Kind.COMPLAINT, message_id, sender, subject, tuple(carried + refers),
                       complained=tuple(complained[:MAX_RECIPIENTS]),
                       unread=max(0, len(complained) - MAX_RECIPIENTS))  # fmt: skip
    dsn = _dsn(msg)
    bounce_like = dsn is not None or _looks_like_bounce(msg)
    if dsn is not None and dsn[0]:
        failures, unread = dsn
    else:
        failures, unread = _freeform(msg) if bounce_like else ([], 0)
    if failures:
        return Inbound(Kind.BOUNCE, message_id, sender, subject, tuple(carried + refers),
                       failures=tuple(failures), unread=unread)  # fmt: skip
    if bounce_like:  # a delivery notice that names no failed recipient: nothing to do
        return Inbound(Kind.NOTICE, message_id, sender, subject, tuple(carried + refers))
    if _automatic(msg):
        # An automatic answer's own text says what it is (an absence note and until when);
        # it never acts as a person's request.
        own = _own_text(msg)
        said = intent.read(own, _own_subject(subject))
        return Inbound(Kind.AUTO_REPLY, message_id, sender, subject, tuple(refers),
                       intent=said.value, body=own[:2000])  # fmt: skip
    own = _own_text(msg)
    said = intent.read(own, _own_subject(subject))
    return Inbound(Kind.REPLY, message_id, sender, subject, tuple(refers),
                   unsubscribe=said is intent.Intent.UNSUBSCRIBE, intent=said.value,
                   body=own[:2000])  # fmt: skip


def _own_subject(subject: str) -> str:
    """A subject the writer wrote: ours with "Re:" in front is not theirs."""
    return "" if re.match(r"^\s*(?:re|aw|sv|antw|rif|res)\s*:", subject, re.IGNORECASE) else subject
