"""structlog configured once: one JSON object per line on stdout, or console output.

Libraries that log through the standard `logging` module (asyncpg, aiormq, aio-pika) are
routed through the same renderer, so their lines are JSON too, with `logger` naming them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from runtime.settings import LogFormat

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


def configure(
    service: str, level: str = "INFO", fmt: LogFormat = LogFormat.JSON, stream: TextIO | None = None
) -> None:
    """Configure structlog for `service` (lines to stdout, or `stream`); safe to call again."""
    out = stream or sys.stdout
    renderer: Any
    if fmt is LogFormat.CONSOLE:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(serializer=json.dumps, default=str)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, scrub_credentials, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Warnings and up from libraries, rendered like our own lines.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                scrub_credentials,
                renderer,
            ],
        )
    )
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
