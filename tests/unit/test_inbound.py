"""core/inbound.py on hand-made messages of each kind: a DSN (hard and soft), a free-form
bounce, a complaint, automatic replies, replies (threaded, asking to unsubscribe), and
whatever bytes arrive (hypothesis: never an exception)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.inbound import (
    MAX_DEPTH,
    MAX_RECIPIENTS,
    Kind,
    Unreadable,
    classify,
    refused_command,
    verdict,
)
from tests.hostile_mail import nested, report_naming

DSN = b"""From: MAILER-DAEMON@mx.acme.test
To: ana@acme.test
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
Message-ID: <bounce-1@mx.acme.test>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.acme.test

Final-Recipient: rfc822; Bob@Example.test
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <bob@example.test>: Recipient address rejected: User unknown

Final-Recipient: rfc822; carol@example.test
Action: failed
Status: 5.2.2
Diagnostic-Code: smtp; 552 5.2.2 Mailbox full

--B
Content-Type: text/rfc822-headers

From: Ana <ana@acme.test>
To: bob@example.test
Message-ID: <step1.42@acme.test>
Subject: Hello

--B--
"""

FREEFORM = b"""Return-Path: <>
From: MAILER-DAEMON@mx4.example.jp
To: ana@acme.test
Subject: failure notice

Hi. This is the qmail-send program at mx4.example.jp.
I'm afraid I wasn't able to deliver your message to the following addresses.

<dan@example.ne.jp>:
192.0.2.32 does not like recipient.
Remote host said: 550 5.1.1 <dan@example.ne.jp>... User Unknown

--- Below this line is a copy of the message.

From: Ana <ana@acme.test>
To: dan@example.ne.jp
Message-ID: <step2.43@acme.test>
"""

ARF = b"""From: feedback@isp.test
To: abuse@acme.test
Subject: Abuse report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

This is an email abuse report.
--F
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: isp/1.0
Version: 1
Original-Rcpt-To: Eve@example.test

--F
Content-Type: message/rfc822

From: ana@acme.test
To: eve@example.test
Message-ID: <step1.44@acme.test>
Subject: Hello

Hi
--F--
"""


def test_a_dsn_names_each_recipient_hard_or_soft() -> None:
    got = classify(DSN)
    assert got.kind == Kind.BOUNCE
    assert [(f.recipient, f.hard, f.reason, f.status) for f in got.failures] == [
        ("bob@example.test", True, "user_unknown", "5.1.1"),
        ("carol@example.test", False, "mailbox_full", "5.2.2"),
    ]
    assert "<step1.42@acme.test>" in got.refers_to  # the original, for the lead


def test_a_free_form_bounce_is_read_from_its_words() -> None:
    got = classify(FREEFORM)
    assert got.kind == Kind.BOUNCE
    (failure,) = got.failures
    assert (failure.recipient, failure.hard, failure.status) == ("dan@example.ne.jp", True, "5.1.1")
    assert got.refers_to == ("<step2.43@acme.test>",)


def test_a_complaint_names_who_complained() -> None:
    got = classify(ARF)
    assert (got.kind, got.complained) == (Kind.COMPLAINT, ("eve@example.test",))
    assert got.refers_to == ("<step1.44@acme.test>",)


_NOTICE = "Subject: Returned mail\nFrom: MAILER-DAEMON@mx.example.test"


def _mail(headers: str, body: str) -> bytes:
    return f"From: Bob <bob@example.test>\nTo: ana@acme.test\n{headers}\n\n{body}".encode()


def test_automatic_replies_are_not_replies() -> None:
    for headers in (
        "Subject: Re: Hello\nAuto-Submitted: auto-replied",
        "Subject: Out of Office: Hello",
        "Subject: Automatic reply: Hello",
        "Subject: Hello\nX-Autoreply: yes",
        "Subject: Hello\nPrecedence: auto_reply",
    ):
        assert classify(_mail(headers, "I am away until Monday.")).kind == Kind.AUTO_REPLY, headers
    assert classify(_mail("Subject: Re: x\nAuto-Submitted: no", "Thanks!")).kind == Kind.REPLY


def test_a_reply_refers_to_our_message_and_may_ask_to_unsubscribe() -> None:
    threaded = "Subject: Re: Hello\nIn-Reply-To: <step1.42@acme.test>\nReferences: <a@b> <step1.42@acme.test>"
    got = classify(_mail(threaded, "Sounds good, call me.\n\nOn Mon, Ana wrote:\n> unsubscribe"))
    assert got.kind == Kind.REPLY
    assert got.refers_to == ("<step1.42@acme.test>", "<a@b>", "<step1.42@acme.test>")
    assert got.unsubscribe is False  # the word is in the quote, not in the reply
    assert got.body == "Sounds good, call me."
    for words in ("Unsubscribe", "please remove me from this list", "STOP", "Take me off"):
        assert classify(_mail(threaded, words)).unsubscribe, words


def test_hard_only_when_the_address_does_not_exist_or_is_gone() -> None:
    assert verdict("5.1.1", "550 5.1.1 user unknown") == ("user_unknown", True)
    assert verdict("5.1.2", "Host or domain name not found") == ("host_unknown", True)
    assert verdict("5.1.6", "551 has moved") == ("moved", True)
    assert verdict("5.2.2", "mailbox full") == ("mailbox_full", False)
    assert verdict("5.7.1", "blocked by spamhaus") == ("blocked", False)
    assert verdict("5.7.1", "rejected as spam") == ("spam", False)
    assert verdict("5.7.1", "550 5.7.1 relaying denied")[1] is False  # a policy: not the address
    assert verdict("4.4.7", "retry timeout exceeded") == ("expired", False)
    assert verdict("5.1.8", "Domain of sender address does not exist")[1] is False
    # Words alone: a filter refusing the content says "user unknown" too.
    assert verdict("5.0.0", "User unknown", ">>> DATA\n<<< 550 5.0.0 User unknown") == (
        "filtered",
        False,
    )
    assert verdict("5.7.1", "550 5.7.1 User unknown") == ("filtered", False)
    assert verdict("5.7.1", "User unknown", ">>> RCPT To:<a@b>\n<<< 550 5.7.1 User unknown")[1]
    # The status names the address, whatever the stage; a refusal before RCPT is not about it.
    assert verdict("5.1.1", "User unknown", ">>> DATA\n<<< 550 5.1.1 User unknown")[1]
    assert verdict("5.0.0", "No such user", "after MAIL FROM:<me@x>") == ("rejected", False)
    assert verdict("5.0.0", "550 <a@b.test>: Recipient address rejected.", "", "a@b.test") == (
        "user_unknown",
        True,
    )
    assert verdict("5.0.0", "550 <a@b.test>: Recipient address rejected: policy")[1] is False


def test_unknown_user_words_are_hard_only_when_they_are_about_the_address() -> None:
    # A server's answer that names the recipient (Postfix's and sendmail's RCPT answers).
    assert verdict("5.0.0", "550 <a@b.test>: User unknown", "", "a@b.test")[1]
    assert verdict("5.0.0", "550 a@b.test... No such user", "", "a@b.test")[1]
    assert verdict("5.0.0", "550: <a@b.test>: User unknown", "", "a@b.test")[1]
    assert verdict("5.2.1", "550 5.2.1 <a@b.test>... User Unknown", "", "a@b.test")[1]
    assert verdict("5.2.1", "550 5.2.1 <c@b.test>... User Unknown", "", "a@b.test")[1] is False
    # An answer that names nobody, or another address, at no known stage: a filter's, maybe.
    assert verdict("5.0.0", "550 : User unknown", "", "a@b.test") == ("filtered", False)
    assert verdict("5.0.0", "550: : User unknown", "", "a@b.test") == ("filtered", False)
    assert verdict("5.0.0", "550 <c@b.test>: User unknown", "", "a@b.test")[1] is False
    # The status names the address (X.1.x, Microsoft's 5.1.10 and 5.1.351 too), or RCPT TO.
    assert verdict("5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found")[1]
    assert verdict("5.1.351", "550 5.1.351 unknown recipient or mailbox unavailable")[1]
    assert verdict("5.0.0", "550 User unknown (in reply to RCPT TO command)")[1]
    # The reporting MTA's own words about the recipient, no server answer quoted.
    assert verdict(None, "The recipient name is not recognized")[1]
    assert verdict(None, "kijitora@example.test [User unknown]")[1]
    # ... but a report's Diagnostic-Code is the receiving server's answer, words and all.
    plain = "The email account that you tried to reach does not exist."
    assert verdict("5.0.0", plain)[1]
    assert verdict("5.0.0", plain, answer=True) == ("filtered", False)
    assert verdict("5.0.0", "550 Requested action not taken: mailbox unavailable")[1] is False


def test_a_local_delivery_program_s_failure_is_soft() -> None:
    raw = DSN.replace(
        b"Diagnostic-Code: smtp; 550 5.1.1 <bob@example.test>: Recipient address rejected: User"
        b" unknown",
        b'Diagnostic-Code: x-unix; procmail: Couldn\'t create "/var/mail/bob": No such user',
    )
    got = {f.recipient: (f.hard, f.reason) for f in classify(raw).failures}
    assert got["bob@example.test"] == (False, "mailer_error")


def test_the_recipient_of_a_report_is_a_plain_address() -> None:
    def recipient(final: str, original: str = "") -> list[str]:
        block = f"Final-Recipient: rfc822;{final}\n" + (
            f"Original-Recipient: rfc822;{original}\n" if original else ""
        )
        body = f"Reporting-MTA: dns; mx.example.test\n\n{block}Action: failed\nStatus: 5.1.1\n"
        return [f.recipient for f in classify(_mail(_NOTICE, body)).failures]

    assert recipient("|/usr/bin/prog gone@example.test /home/x") == ["gone@example.test"]
    assert recipient("@relay.example.test:gone@host", "gone@example.test") == ["gone@example.test"]
    assert recipient("@relay.example.test:gone@host") == []
    assert recipient("gone@mailhub0", "alias@example.test") == ["gone@mailhub0"]


def test_recipients_blocks_run_together_are_told_apart() -> None:
    body = (
        "Reporting-MTA: dns; mx.example.test\n\n"
        "Final-Recipient: rfc822; full@example.test\nAction: failed\nStatus: 5.2.2\n"
        "Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\n"
        "Final-Recipient: rfc822; gone@example.test\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n"
    )
    got = {f.recipient: f.hard for f in classify(_mail(_NOTICE, body)).failures}
    assert got == {"full@example.test": False, "gone@example.test": True}


def test_an_ses_notification_in_its_sns_envelope() -> None:
    inner = (
        '{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":'
        '[{"emailAddress":"gone@example.test","status":"5.1.1",'
        '"diagnosticCode":"smtp; 550 5.1.1 user unknown"}]}}'
    )
    body = '{\n  "Type" : "Notification",\n  "Message" : ' + json.dumps(inner) + "\n}\n"
    got = classify(_mail("Subject: AWS Notification Message\nFrom: no-reply@sns.example", body))
    assert got.kind == Kind.BOUNCE
    assert [(f.recipient, f.hard) for f in got.failures] == [("gone@example.test", True)]


def test_a_notice_names_the_recipient_in_its_rcpt_to_line_not_the_sender() -> None:
    body = (
        "Error: Invalid user address\n\nError message below:\n"
        "550 - Requested action not taken: no such user here\n\nMessage details:\n"
        "  MAIL FROM: ana@acme.test\n  RCPT TO: gone@example.test\n"
        "  From: someone-else@elsewhere.test\n"
    )
    raw = f"From: post_master@example.test\nTo: ana@acme.test\nSubject: Re: Hello\n\n{body}"
    got = classify(raw.encode())
    assert [(f.recipient, f.hard) for f in got.failures] == [("gone@example.test", True)]


def test_a_sendmail_transcript_is_read_per_server() -> None:
    body = (
        "   ----- Transcript of session follows -----\n"
        "While talking to a.example.test:\n>>> DATA\n<<< 550 You cannot send to yourself\n"
        "554 <one@a.example.test>... Remote protocol error: Connection reset by peer\n"
        "554 <two@c.example.test>... 550 Host unknown (Authoritative answer from name server)\n"
        "While talking to b.example.test:\n>>> RCPT To:<three@b.example.test>\n"
        "<<< 550 Requested User Mailbox not found. No such user here.\n"
        "550 <three@b.example.test>... User unknown\n\n"
        "   ----- Unsent message follows -----\nFrom: ana@acme.test\n"
    )
    got = classify(_mail("Subject: Returned mail: User unknown\nFrom: MAILER-DAEMON@x.test", body))
    assert {f.recipient: (f.reason, f.hard) for f in got.failures} == {
        "one@a.example.test": ("network", False),
        "two@c.example.test": ("host_unknown", True),
        "three@b.example.test": ("user_unknown", True),
    }


def test_the_refused_command_is_read_from_a_transcript_or_words() -> None:
    assert refused_command(">>> RCPT To:<x@y>\n<<< 550 5.1.1 unknown") == "RCPT"
    assert refused_command(">>> DATA\n<<< 554 rejected") == "DATA"
    assert refused_command("said: 550 no (in reply to end of DATA command)") == "DATA"
    assert refused_command("SMTP error from remote mail server after RCPT TO:<a@b>") == "RCPT"
    assert refused_command("nothing about it") is None


@given(st.binary(max_size=4000))
@settings(max_examples=300, deadline=None)
def test_any_bytes_get_a_verdict(raw: bytes) -> None:
    assert classify(raw).kind in Kind


def test_a_report_whose_parts_ran_together_is_still_read() -> None:
    body = (
        "The following addresses had permanent fatal errors\n\n"
        "Reporting-MTA: dns; mx.example.test\n\n"
        "Final-Recipient: RFC822; gone@example.test\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n"
    )
    got = classify(_mail("Subject: Returned mail\nFrom: MAILER-DAEMON@example.test", body))
    assert got.kind == Kind.BOUNCE
    assert [(f.recipient, f.hard, f.status) for f in got.failures] == [
        ("gone@example.test", True, "5.1.1")
    ]


def test_a_report_without_a_diagnostic_takes_the_notice_s_words_for_its_recipient() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.test\nTo: ana@acme.test\nSubject: Delivery failure\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        b"--B\nContent-Type: text/plain\n\n"
        b"full@example.test: 552 5.2.2 Mailbox full\n"
        b"gone@example.test: 550 5.1.1 Recipient address rejected: User unknown\n\n"
        b"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.test\n\n"
        b"Final-Recipient: rfc822; gone@example.test\nAction: failed\nStatus: 5.0.0\n\n"
        b"Final-Recipient: rfc822; full@example.test\nAction: failed\nStatus: 5.0.0\n\n--B--\n"
    )
    got = {f.recipient: (f.hard, f.status) for f in classify(raw).failures}
    assert got == {"gone@example.test": (True, "5.1.1"), "full@example.test": (False, "5.2.2")}


def test_a_feedback_report_names_every_complainant_whatever_its_subject() -> None:
    raw = (
        b"From: fbl@isp.example\nTo: postmaster@acme.test\nSubject: Abuse Report\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="B"\n\n'
        b"--B\nContent-Type: text/plain\n\nA complaint.\n\n"
        b"--B\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\n"
        b"Original-Rcpt-To: a@example.test\nOriginal-Rcpt-To: B@example.test\n\n"
        b"--B\nContent-Type: message/rfc822\n\nFrom: ana@acme.test\nTo: undisclosed-recipients:;\n"
        b"Subject: Hi\n\nHello\n--B--\n"
    )
    got = classify(raw)
    assert got.kind == Kind.COMPLAINT
    assert got.complained == ("a@example.test", "b@example.test")


def test_a_postfix_notice_names_its_recipients_at_the_start_of_a_line() -> None:
    body = (
        "This is the mail system at host mx.example.test.\n\n"
        "For further assistance, please send mail to <postmaster@isp.example>\n"
        "or ask <support@isp.example> for help.\n\n"
        "<gone@example.test>: host mx.example.test[192.0.2.1] said: 550 5.1.1\n"
        "    <gone@example.test>: Recipient address rejected: User unknown (in reply to\n"
        "    RCPT TO command)\n"
    )
    got = classify(_mail("Subject: Undelivered Mail Returned to Sender\n"
                         "From: MAILER-DAEMON@mx.example.test", body))  # fmt: skip
    assert [(f.recipient, f.hard) for f in got.failures] == [("gone@example.test", True)]


def test_a_report_naming_thousands_is_read_for_its_first_fifty() -> None:
    """Our messages have one recipient each: the rest of a long report is counted, not read
    (reading costs time linear in the report's size; `make bench` measures it)."""
    got = classify(report_naming(4000))
    assert got.kind is Kind.BOUNCE
    assert [f.recipient for f in got.failures] == [f"u{i}@x.test" for i in range(MAX_RECIPIENTS)]
    assert all(f.hard for f in got.failures)
    assert got.unread == 4000 - MAX_RECIPIENTS


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000])
def test_deep_nesting_is_unreadable_not_a_crash(depth: int) -> None:
    raw = nested(depth)
    with pytest.raises(Unreadable, match="nested deeper"):
        classify(raw)
