"""Starting the daemons as processes: one helper for the end-to-end tests, the fault suite
and the bench."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def spawn(
    module: str, env: dict[str, str], log: Path, *, mark: bool = False
) -> subprocess.Popen[bytes]:
    """`python -m <module>` from the project root, its output appended to `log`; with `mark`,
    a line first saying where this process's part of the file begins."""
    with log.open("ab") as out:
        if mark:
            out.write(f"--- start t={time.monotonic():.3f}\n".encode())
            out.flush()
        return subprocess.Popen(
            [sys.executable, "-m", module], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
