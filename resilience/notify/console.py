"""The console channel: a notification as one structured log line, the channel that always works.

It is the last fallback of an escalation: nothing to configure, no network. The notification is
logged through structlog (logger ``alchemiser.notify``, event ``notification``) at ``critical``
for a CRITICAL one, ``error`` for HIGH and ``warning`` otherwise, with its title, key, count,
held_back, status and the plain-text email body. Should logging itself fail (a closed stream),
the send answers a SERVER_ERROR delivery instead of raising.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from resilience.notify import render
from resilience.notify.channel import Delivery, FailureReason
from resilience.notify.model import Notification
from resilience.policy.retry import ErrorSeverity

__all__ = ["ConsoleChannel"]

_EVENT = "notification"


class _Logger(Protocol):
    """The part of a structlog logger the console channel uses."""

    def critical(self, event: str, **fields: Any) -> Any: ...
    def error(self, event: str, **fields: Any) -> Any: ...
    def warning(self, event: str, **fields: Any) -> Any: ...


class ConsoleChannel:
    """Logs a notification at a level that follows its severity; always delivered."""

    def __init__(
        self,
        logger: _Logger | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._log: _Logger = (
            logger if logger is not None else structlog.get_logger("alchemiser.notify")
        )
        self._clock = clock

    @property
    def name(self) -> str:
        """``console``."""
        return "console"

    def send(self, notification: Notification) -> Delivery:
        """Log the notification; delivered, with how long logging took."""
        started = self._clock()
        n = notification
        if n.severity is ErrorSeverity.CRITICAL:
            log = self._log.critical
        elif n.severity is ErrorSeverity.HIGH:
            log = self._log.error
        else:
            log = self._log.warning
        try:
            log(
                _EVENT,
                title=n.title,
                key=n.key,
                count=n.count,
                held_back=n.held_back,
                status=n.status.value,
                body=render.email(n).text,
            )
        except Exception as failed:  # a broken log stream must not break the escalation
            return Delivery.failed(
                self.name,
                FailureReason.SERVER_ERROR,
                type(failed).__name__,
                self._clock() - started,
            )
        return Delivery.ok(self.name, self._clock() - started)
