"""core/circuit.py: which failures are the account's, when the circuit opens, waits, probes
and closes, and that a run of refusals for different recipients holds instead of failing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.backoff import SmtpFailure
from core.circuit import LONGEST_WAIT, Circuit, Go, State, Wait, account_failure, may_be_account

T = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
REFUSED = SmtpFailure(None, "ConnectionRefusedError", stage="connect")


def test_what_counts_as_the_account_failing() -> None:
    assert account_failure(REFUSED)
    assert account_failure(SmtpFailure(535, "5.7.8 bad credentials", stage="connect"))
    assert account_failure(SmtpFailure(530, "5.7.0 Authentication required", stage="mail"))
    assert account_failure(SmtpFailure(554, "5.7.1 sender blocked", stage="mail"))
    assert account_failure(SmtpFailure(421, "4.3.2 shutting down", stage="rcpt"))
    assert not account_failure(SmtpFailure(550, "5.1.1 no such user", stage="rcpt"))
    assert not account_failure(SmtpFailure(452, "4.2.2 mailbox full", stage="rcpt"))
    assert not account_failure(SmtpFailure(None, "no reply", after_data=True, stage="content"))


def test_open_wait_probe_close() -> None:
    c = Circuit(first_wait=timedelta(seconds=30))
    assert c.before_send(T) == Go()
    verdict = c.failed(REFUSED, "a@x.test", T)
    assert (verdict.hold, verdict.opened, c.state) == (True, True, State.OPEN)
    assert c.before_send(T + timedelta(seconds=10)) == Wait(T + timedelta(seconds=30))
    assert c.failed(REFUSED, "b@x.test", T).opened is False  # one event per opening
    later = T + timedelta(seconds=31)
    assert c.before_send(later) == Go(probe=True)
    assert isinstance(c.before_send(later), Wait)  # one probe at a time
    # The probe fails: wait twice as long, up to the longest wait.
    assert c.failed(REFUSED, "c@x.test", later).opened is False
    assert c.retry_at == later + timedelta(seconds=60)
    for _ in range(10):
        c.state, c.probing = State.HALF_OPEN, True
        c.failed(REFUSED, "c@x.test", later)
    assert c.wait == LONGEST_WAIT
    assert c.succeeded() is True  # closed by a success
    assert (c.state, c.wait, c.before_send(later)) == (State.CLOSED, timedelta(seconds=30), Go())
    assert c.succeeded() is False


def test_refusals_of_different_recipients_in_a_row_hold_then_open() -> None:
    c = Circuit()
    no = SmtpFailure(550, "5.0.0 Requested action not taken", stage="rcpt")
    assert c.failed(no, "a@x.test", T).hold is False  # the first: the lead's own verdict
    assert c.failed(no, "a@x.test", T).hold is False  # the same recipient again
    second = c.failed(no, "b@x.test", T)
    assert (second.hold, second.opened) == (True, False)  # held until the account proves ok
    third = c.failed(no, "c@x.test", T)
    assert (third.hold, third.opened, c.state) == (True, True, State.OPEN)
    c.succeeded()
    assert c.failed(no, "d@x.test", T).hold is False  # a success ended the run
    unknown = SmtpFailure(550, "5.1.1 no such user", stage="rcpt")
    for rcpt in ("e@x.test", "f@x.test", "g@x.test", "h@x.test"):
        assert c.failed(unknown, rcpt, T).hold is False  # bad addresses, not a bad account
    assert c.state is State.CLOSED


def test_a_failure_after_data_is_never_held_and_a_probe_that_got_there_closes() -> None:
    """The server may have a message whose reply was lost after DATA: holding it would send
    it again. Whatever the circuit's state, it goes to the lead's own rules (unknown)."""
    lost = SmtpFailure(None, "connection lost after DATA", after_data=True, stage="content")
    c = Circuit(first_wait=timedelta(seconds=30))
    for rcpt in ("a@x.test", "b@x.test", "c@x.test", "d@x.test"):
        assert c.failed(lost, rcpt, T).hold is False
    assert c.state is State.CLOSED  # never a run of refusals
    c.failed(REFUSED, "a@x.test", T)
    # A message under way when the circuit opened, lost after DATA: not held either.
    assert (c.failed(lost, "e@x.test", T).hold, c.state) == (False, State.OPEN)
    later = T + timedelta(seconds=31)
    assert c.before_send(later) == Go(probe=True)
    verdict = c.failed(lost, "f@x.test", later)
    assert (verdict.hold, verdict.closed, c.state) == (False, True, State.CLOSED)
    assert c.before_send(later) == Go()


def test_a_refusal_that_may_be_the_accounts_fails_no_lead_until_the_account_delivers() -> None:
    """A relay that starts answering every recipient "554 5.7.1 Relay access denied": not
    even the first lead fails. Once the account has delivered to someone else since, the
    same answer is the recipient's, and the lead's own rules decide."""
    denied = SmtpFailure(554, "5.7.1 <a@x.test>: Relay access denied", stage="rcpt")
    c = Circuit(first_wait=timedelta(seconds=30))
    first = c.failed(denied, "a@x.test", T)
    assert (first.hold, first.until) == (True, T + timedelta(seconds=30))
    again = c.failed(denied, "a@x.test", T + timedelta(seconds=30))
    assert (again.hold, again.until) == (True, T + timedelta(seconds=90))  # doubling
    assert c.state is State.CLOSED  # one recipient is no run
    # The account delivers to another recipient: the refusal was about a@x.test.
    c.succeeded(T + timedelta(seconds=40))
    assert c.failed(denied, "a@x.test", T + timedelta(seconds=100)).hold is False
    # A refusal first seen after that delivery is held again until the next one.
    assert c.failed(denied, "b@x.test", T + timedelta(seconds=101)).hold is True


def test_which_refusals_may_be_the_accounts() -> None:
    for code, text, stage in [
        (554, "5.7.1 <a@x.test>: Relay access denied", "rcpt"),
        (550, "5.7.1 Service unavailable; client [1.2.3.4] blocked using zen.spamhaus.org", "rcpt"),
        (
            553,
            "sorry, that domain isn't in my list of allowed rcpthosts; no valid cert for gateway",
            "mail",
        ),
        (550, "5.7.0 Message rejected: content policy", "data"),
        (554, "Message rejected", "data"),
        (550, "Sender address rejected: not owned by user", "rcpt"),
    ]:
        assert may_be_account(SmtpFailure(code, text, stage=stage)), text
    refusals: list[tuple[int | None, str, str]] = [
        (550, "5.1.1 <a@x.test>: Recipient address rejected: User unknown", "rcpt"),
        (552, "5.2.2 Mailbox full", "rcpt"),
        (451, "4.7.1 Greylisted, try again", "rcpt"),
        (None, "no reply after the message was sent", "content"),
    ]
    for maybe_code, text, stage in refusals:
        assert not may_be_account(SmtpFailure(maybe_code, text, stage=stage)), text
