"""Structured JSON logs (structlog), and secret scrubbing of every log line a worker writes.

structlog lines are scrubbed by a processor; Celery's own stdlib log records (a task's raised
exception and its traceback, retry notices) by a filter on the handlers Celery installs.
"""

from __future__ import annotations

import io
import logging
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import structlog

from resilience.scrub import Scrubber

__all__ = ["ScrubbingFilter", "configure_logging", "scrub_handlers"]


class ScrubbingFilter(logging.Filter):
    """Rewrites a record's message and traceback with the scrubber before any handler."""

    def __init__(self, scrubber: Scrubber) -> None:
        super().__init__()
        self._scrub = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._scrub.text(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = self._scrub.text(
                "".join(traceback.format_exception(*record.exc_info))
            )
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self._scrub.text(record.exc_text)
        return True


def scrub_handlers(logger: logging.Logger, scrubber: Scrubber) -> None:
    """Add a :class:`ScrubbingFilter` to every handler of ``logger`` (once each)."""
    for handler in logger.handlers:
        if not any(isinstance(f, ScrubbingFilter) for f in handler.filters):
            handler.addFilter(ScrubbingFilter(scrubber))


class _ProcessStderr(io.TextIOBase):
    """The process's own stderr, looked up at write time.

    Not ``sys.stderr`` as it is when logging is configured: a CLI runner swaps that stream
    and closes it (a cached logger then fails with "I/O operation on closed file"), and a
    Celery pool child replaces it by a proxy that would wrap every JSON line in a log prefix.
    """

    def write(self, text: str) -> int:
        return (sys.__stderr__ or sys.stderr).write(text)

    def flush(self) -> None:
        (sys.__stderr__ or sys.stderr).flush()


def configure_logging(scrubber: Scrubber, level: str = "INFO") -> None:
    """JSON lines on stderr: timestamp, level, event and the bound fields, scrubbed."""

    def scrub_event(
        logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        scrubbed: MutableMapping[str, Any] = scrubber(dict(event))
        return scrubbed

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrub_event,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=cast("TextIO", _ProcessStderr())),
        cache_logger_on_first_use=True,
    )
    scrub_handlers(logging.getLogger(), scrubber)
