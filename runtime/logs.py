"""structlog configured once: one JSON object per line on stdout, or console output."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from core.settings import LogFormat

_CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)[^@\s]+@")


def _scrub(value: Any) -> Any:
    if isinstance(value, str) and "://" in value:
        return _CREDENTIALS.sub(r"\1***@", value)
    return value


def scrub_credentials(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> Mapping[str, Any]:
    """Mask passwords in any URL that reaches a log line."""
    return {k: _scrub(v) for k, v in event.items()}


def configure(service: str, level: str = "INFO", fmt: LogFormat = LogFormat.JSON) -> None:
    """Configure structlog for `service`; safe to call again (tests do)."""
    renderer: Any
    if fmt is LogFormat.CONSOLE:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(serializer=json.dumps, default=str)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            structlog.processors.format_exc_info,
            scrub_credentials,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries that use the standard logging module go to stderr, warnings and up.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
