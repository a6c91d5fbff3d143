"""Reading one inbound message in a child process (runtime/child.py), within
INBOUND_TIMEOUT_SECONDS: whatever a stranger wrote (nesting, size, an encoding that makes a
parser spin) costs that message alone, never the event loop that watches every mailbox."""

from __future__ import annotations

import concurrent.futures
import signal
import types

from core.inbound import Inbound, Unread, Unreadable, classify
from runtime.child import Child, limit_memory

# What the reading child may map beyond what it had after start-up (MAX_BYTES of mail and
# its parse, many times over).
CHILD_MEMORY_BYTES = 768 * 1024 * 1024
# Extra seconds the parent grants before it decides the child hangs (in one C call).
HANG_GRACE_SECONDS = 5.0


class _OutOfTime(Exception):
    pass


def _on_alarm(_signum: int, _frame: types.FrameType | None) -> None:
    raise _OutOfTime


def _init_child() -> None:
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    limit_memory(CHILD_MEMORY_BYTES)


def read_here(raw: bytes, seconds: float) -> Inbound | Unread:
    """Classify `raw` within `seconds` (in the child: a timer interrupts it); never raises."""
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return classify(raw)
    except _OutOfTime:
        return Unread(f"reading took longer than {seconds:g} s")
    except Unreadable as exc:
        return Unread(str(exc))
    except RecursionError:
        return Unread("nested too deep to read")
    except MemoryError:
        return Unread("too large to read")
    except Exception as exc:  # a message that breaks the parser fails alone
        return Unread(f"{type(exc).__name__}: {exc}"[:300])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


_child = Child(_init_child)


async def start() -> None:
    await _child.start()


def shutdown() -> None:
    _child.kill()


async def read(raw: bytes, seconds: float) -> Inbound | Unread:
    """What `raw` is, read in the child within `seconds`: a verdict, or why it is unreadable."""
    try:
        return await _child.call(seconds + HANG_GRACE_SECONDS, read_here, raw, seconds)
    except TimeoutError:
        return Unread(f"reading did not finish within {seconds:g} s")
    except concurrent.futures.BrokenExecutor:
        return Unread("the reader died reading it (memory)")
