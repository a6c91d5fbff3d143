"""A daemon's exit status is its own: a stop request before the loop runs, or a late one
after it stopped, never turns into "killed by SIGTERM"."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, os, signal
from runtime import daemon

async def main(stop):
    await asyncio.wait_for(stop.wait(), 10)  # times out (exit 1) unless asked to stop
    print("main saw stop", flush=True)

{before}
code = daemon.run(main, shutdown_timeout=5)
{after}
raise SystemExit(code)
"""


def _run(before: str = "", after: str = "") -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(SCRIPT).format(before=before, after=after)
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30
    )


def test_sigterm_before_the_loop_starts_is_a_clean_stop() -> None:
    # The signal lands in the window between process start-up and the loop's handlers.
    done = _run(
        before=(
            "import runtime.daemon as lc\n"
            "signal.signal(signal.SIGTERM, lc._note_early_signal)\n"
            "os.kill(os.getpid(), signal.SIGTERM)"
        )
    )
    assert done.returncode == 0, done.stderr
    assert "main saw stop" in done.stdout


def test_sigterm_after_the_daemon_stopped_does_not_kill_it() -> None:
    done = _run(
        before=(
            "import threading\nthreading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()"
        ),
        after="os.kill(os.getpid(), signal.SIGTERM)\nimport time; time.sleep(0.2)",
    )
    assert done.returncode == 0, done.stderr
    assert "main saw stop" in done.stdout
