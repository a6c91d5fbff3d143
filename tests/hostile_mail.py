"""Mail a stranger could write to make the inbox daemon slow or crash: a report naming
thousands of recipients, and a message nested far deeper than any mail. Used by the unit
tests, the end-to-end tests and the bench."""

from __future__ import annotations


def report_naming(n: int, domain: str = "x.test") -> bytes:
    """A DSN naming `n` failed recipients (u0@domain ...), each with its line in the notice."""
    blocks = "".join(
        f"Final-Recipient: rfc822; u{i}@{domain}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        for i in range(n)
    )
    text = "".join(f"<u{i}@{domain}>: host said: 550 5.1.1 user unknown\r\n" for i in range(n))
    return (
        "From: MAILER-DAEMON@mx.test\r\nTo: ana@acme.test\r\nSubject: Undelivered\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/report; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: text/plain\r\n\r\n{text}\r\n--b\r\n"
        "Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        f"{blocks}--b--\r\n"
    ).encode()


def nested(depth: int) -> bytes:
    """A multipart message nested `depth` deep."""
    head = "From: x@evil.test\r\nTo: ana@acme.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
    opening = "".join(
        f'Content-Type: multipart/mixed; boundary="n{i}"\r\n\r\n--n{i}\r\n' for i in range(depth)
    )
    closing = "".join(f"\r\n--n{i}--\r\n" for i in reversed(range(depth)))
    return (head + opening + "Content-Type: text/plain\r\n\r\nhello" + closing).encode()
