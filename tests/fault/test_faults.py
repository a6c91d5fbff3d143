"""The short form of the fault suite (the long form: `make fault-long SEED=… DURATION=…`)."""

from __future__ import annotations

import os
import random
import shutil

import pytest

from tests.fault.run import Config, run

pytestmark = [
    pytest.mark.fault,
    pytest.mark.skipif(
        shutil.which("rabbitmq-server") is None or shutil.which("initdb") is None,
        reason="needs rabbitmq-server and PostgreSQL's initdb to start private instances",
    ),
]


async def test_guarantees_hold_under_faults() -> None:
    # A fixed seed by default, so CI runs are reproducible; FAULT_SEED=random explores.
    given = os.environ.get("FAULT_SEED", "777")
    seed = random.SystemRandom().randrange(1, 10**6) if given == "random" else int(given)
    report = await run(
        Config(
            seed=seed, duration=float(os.environ.get("FAULT_DURATION", "50")), leads_per_batch=40
        )
    )
    assert report.faults, "no fault was injected"
    assert sum(report.smtp.values()) > 0
    assert not report.failures, f"seed {seed}:\n{report.table()}"
