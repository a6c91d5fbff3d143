"""Planning due leads in a child process, each lead within a time budget.

A step template is operator data and can be hostile: nested loops that run for hours, or
values that take all memory. Planning (rendering above all) therefore runs in a child
process: the event loop stays free, a SIGTERM is answered, and the claim transaction's
locks are held for a bounded time. In the child a timer interrupts a lead whose planning
passes `seconds` (the lead fails with `template_error`), and the address space is capped. A
batch stops taking new leads once it has spent `BATCH_SECONDS` (the rest stay due for the
next batch), so a run of hostile leads delays the others by seconds, never hours. Should
the child hang anyway (inside one C call), it is killed and the batch is planned again one
lead at a time, each lead that hangs again failing alone.
"""

from __future__ import annotations

import concurrent.futures
import signal
import time
import types
from collections.abc import Sequence
from datetime import datetime

import structlog

from core import planner, render
from core.schemas import SendJob
from runtime.child import Child, limit_memory

log = structlog.get_logger()

# What a child may map beyond what it had after start-up.
CHILD_MEMORY_BYTES = 1024 * 1024 * 1024
# Extra seconds the parent grants before it decides the child hangs.
HANG_GRACE_SECONDS = 10.0
# Planning time after which a batch takes no more leads (at least one is always planned).
BATCH_SECONDS = 5.0

# --- in the child ---------------------------------------------------------------------


def _on_alarm(_signum: int, _frame: types.FrameType | None) -> None:
    raise render.BudgetExceeded("_timeout_")


def _init_child() -> None:
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    limit_memory(CHILD_MEMORY_BYTES)


def _plan_one(
    lead: planner.DueLead, now: datetime, settings: planner.Settings, seconds: float
) -> planner.Decision:
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        decision = planner.plan(lead, now, settings)
    except render.BudgetExceeded:  # the timer fired outside the template
        decision = planner.Fail("template_error", "_timeout_")
    except Exception as exc:  # a lead whose data breaks planning fails alone
        decision = planner.Fail("invalid_data", f"{type(exc).__name__}: {exc}"[:500])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if isinstance(decision, planner.Fail) and "_timeout_" in decision.error:
        part = decision.error.split(":", 1)[0] if ":" in decision.error else "step"
        return planner.Fail("template_error", f"{part}: rendering took longer than {seconds:g} s")
    return decision


def plan_batch(
    leads: Sequence[planner.DueLead], now: datetime, settings: planner.Settings, seconds: float
) -> list[planner.Decision]:
    """Plan the leads in order (in the child) until BATCH_SECONDS are spent; never raises
    for one lead's data. The decisions are for the first leads, as many as were planned."""
    started = time.monotonic()
    decisions: list[planner.Decision] = []
    for lead in leads:
        if decisions and time.monotonic() - started > BATCH_SECONDS:
            break
        decisions.append(_plan_one(lead, now, settings, seconds))
    return decisions


def _preview_one(
    lead: planner.DueLead, settings: planner.Settings, seconds: float
) -> SendJob | str:
    """The rendered message, or why it cannot be rendered (in the child, under the timer)."""
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return planner.render_job(lead, settings)
    except render.BudgetExceeded as exc:
        return str(exc).replace("_timeout_", f"rendering took longer than {seconds:g} s")
    except Exception as exc:  # TemplateError, or data the message rules refuse
        return str(exc)[:1000] or type(exc).__name__
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


# --- in the parent --------------------------------------------------------------------

_child = Child(_init_child)  # one per process, shared by every Scheduler


async def start() -> None:
    """Start the child now rather than at the first due lead (it takes a moment)."""
    await _child.start()


def shutdown() -> None:
    """Stop the child (at the end of the process; it may be busy with a hostile template)."""
    _child.kill()


async def _in_child(
    leads: Sequence[planner.DueLead],
    now: datetime,
    settings: planner.Settings,
    seconds: float,
    within: float,
) -> list[planner.Decision]:
    return await _child.call(within, plan_batch, list(leads), now, settings, seconds)


async def plan(
    leads: Sequence[planner.DueLead], now: datetime, settings: planner.Settings, seconds: float
) -> list[planner.Decision]:
    """Decide what happens to the due leads, each within `seconds` of planning: the
    decisions for the first of them (all but when hostile templates took the batch's time;
    the rest are left as they are, still due)."""
    if not leads:
        return []
    try:
        return await _in_child(
            leads, now, settings, seconds, BATCH_SECONDS + seconds + HANG_GRACE_SECONDS
        )
    except (TimeoutError, concurrent.futures.BrokenExecutor) as exc:
        log.warning("planning_child_restarted", error=repr(exc), leads=len(leads))
    decisions: list[planner.Decision] = []
    for lead in leads:
        try:
            (decision,) = await _in_child(
                [lead], now, settings, seconds, seconds + HANG_GRACE_SECONDS
            )
        except (TimeoutError, concurrent.futures.BrokenExecutor):
            decision = planner.Fail(
                "template_error", f"rendering did not finish within {seconds:g} s"
            )
        decisions.append(decision)
    return decisions


async def preview(
    lead: planner.DueLead, settings: planner.Settings, seconds: float
) -> SendJob | str:
    """Render `lead`'s step as the scheduler would, in the same child and budget: the
    message, or the error an operator should see."""
    try:
        return await _child.call(
            seconds + HANG_GRACE_SECONDS, _preview_one, lead, settings, seconds
        )
    except (TimeoutError, concurrent.futures.BrokenExecutor):
        return f"rendering did not finish within {seconds:g} s"
