"""Running a daemon: settings and logs, the event loop, signals (soft stop, then hard), the
heartbeat, exit statuses (0 stopped, 1 crashed, 2 misconfigured)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from runtime import health, logs, metrics
from runtime.settings import CommonSettings, HealthSettings, load_or_exit, unknown_variables
from runtime.startup import StartupError

log = structlog.get_logger()

Main = Callable[[asyncio.Event], Awaitable[None]]
S = TypeVar("S", bound=CommonSettings)


def start(service: str, cls: type[S]) -> S:
    """Settings (or exit 2 with one line) and logs for `service`; warn about likely typos."""
    settings = load_or_exit(cls)
    logs.configure(service, settings.log_level, settings.log_format)
    for name, close in unknown_variables(os.environ):
        log.warning("unknown_setting", variable=name, did_you_mean=close)
    return settings


_ROLES = {
    "scheduler": "turns due leads into outbox rows, within windows and pacing",
    "pump": "publishes outbox rows to RabbitMQ with publisher confirms",
    "worker": "sends queued messages over SMTP and records each outcome (`python -m worker"
    " replay-dead-letters [N]` replays dead letters instead)",
    "inbox": "reads replies, bounces and complaints from the senders' IMAP inboxes",
    "webhooks": "POSTs events to the webhook endpoints, signed (Standard Webhooks), with retries",
    "api": "serves the REST API (/api/v1), its docs (/docs) and the web console (/)",
}


def arguments(service: str, argv: list[str]) -> argparse.Namespace:
    """A daemon's command line: `--help` and `--version` answer without starting anything."""
    ap = argparse.ArgumentParser(
        prog=f"python -m {service}",
        description=f"The {service} daemon: {_ROLES.get(service, service)}. Its settings come"
        " from the environment (README, Settings); SIGTERM stops it cleanly.",
    )
    ap.add_argument(
        "--health", action="store_true",
        help="do not start: exit 0 when this host's replicas made progress lately, else 1",
    )  # fmt: skip
    ap.add_argument("--version", action="version", version=f"%(prog)s {health.version()}")
    return ap.parse_args(argv)


def main(
    service: str, cls: type[S], build: Callable[[S, health.Heartbeat], Main], argv: list[str]
) -> int:
    """A daemon's `python -m` entry: `--health` checks the running one; otherwise run it."""
    if arguments(service, argv).health:
        return health.main(service)
    settings = start(service, cls)
    metrics.serve(settings.metrics_port, service)
    heartbeat = health.Heartbeat(service, HealthSettings())
    body = build(settings, heartbeat)

    async def beating(stop: asyncio.Event) -> None:
        done = asyncio.Event()
        writer = asyncio.create_task(heartbeat.run(done))
        try:
            await body(stop)
        finally:
            done.set()
            await writer

    return run(beating, shutdown_timeout=settings.shutdown_timeout_seconds)


_early_signal: list[int] = []


def _note_early_signal(signum: int, frame: object) -> None:
    _early_signal.append(signum)


async def _supervise(main: Main, shutdown_timeout: float) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.current_task()
    assert task is not None
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info(
                "shutdown_requested", signal=signal.Signals(signum).name, timeout_s=shutdown_timeout
            )
            stop.set()
            loop.call_later(shutdown_timeout, _hard_stop, "shutdown_timeout")
        else:
            _hard_stop("second_signal")

    def _hard_stop(reason: str) -> None:
        log.warning("shutdown_forced", reason=reason)
        main_task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    if _early_signal:  # asked to stop while the loop was starting
        on_signal(_early_signal[0])
    main_task = asyncio.ensure_future(main(stop))
    try:
        await main_task
    except asyncio.CancelledError:
        # Forced: in-flight work is handed back by the broker (unacked) and the database
        # (uncommitted), so exiting now loses nothing.
        return 0 if stop.is_set() else 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping already
    log.info("stopped")
    return 0


def run(main: Main, *, shutdown_timeout: float) -> int:
    """Run `main(stop)` on uvloop where available; return the process exit status."""
    try:
        import uvloop  # noqa: PLC0415

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        factory = None
    # From here until the loop's own handlers take over, a stop request is remembered, and
    # once the daemon has stopped a late one no longer matters: either way the exit status
    # is the daemon's own, never "killed by SIGTERM".
    signal.signal(signal.SIGTERM, _note_early_signal)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_supervise(main, shutdown_timeout))
    except StartupError as exc:
        log.error("startup_failed", error=str(exc))  # noqa: TRY400 - one line, no traceback
        return 2
    except Exception:
        log.exception("crashed")
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


async def wait_first(stop: asyncio.Event, wake: asyncio.Event | None, seconds: float) -> bool:
    """Sleep until `stop` or `wake` is set or `seconds` pass; clear `wake`. True if woken."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=max(seconds, 0.0), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    woken = wake is not None and wake.is_set()
    if wake is not None:
        wake.clear()
    return woken


async def every(
    interval: float, stop: asyncio.Event, action: Callable[[], Awaitable[None]]
) -> None:
    """Call `action` every `interval` seconds until `stop` is set."""
    while not stop.is_set():
        await wait_first(stop, None, interval)
        if not stop.is_set():
            await action()


# A retried error's log line, by the kind of outage.
Outages = tuple[tuple[tuple[type[BaseException], ...], str], ...]


async def repeat(
    stop: asyncio.Event,
    turn: Callable[[], Awaitable[None]],
    outages: Outages,
    heartbeat: health.Heartbeat | None = None,
) -> None:
    """Call `turn()` (one batch and the wait after it) until `stop`; each completed turn is
    progress. An error of `outages` (a database or broker away) is logged and retried with
    backoff; anything else ends the loop, and the daemon with it."""
    errors = tuple(t for kinds, _ in outages for t in kinds)
    backoff = 0.2
    while not stop.is_set():
        try:
            await turn()
            backoff = 0.2
        except errors as exc:
            event = next(name for kinds, name in outages if isinstance(exc, kinds))
            log.warning(event, error=str(exc), retry_in_s=backoff)
            await wait_first(stop, None, backoff)
            backoff = min(backoff * 2, 10.0)
        if heartbeat is not None:
            heartbeat.beat()
