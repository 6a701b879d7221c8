"""The worker's consumer: one malformed message never stops a queue.

Celery's consumer catches only the errors it expects while turning a message into a task
request (an unknown name, an unreadable ETA); anything else (a body that is not
``[args, kwargs, embed]``, a ``timelimit`` header that is not two numbers) escapes into the
event loop as an "Unrecoverable error": the worker exits, the message is restored, and every
worker that takes it dies the same way. Here such a message is quarantined (a dead letter with
its raw body, :mod:`resilience.deadletter.quarantine`) and acknowledged, and the worker goes on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import structlog
from celery.worker.consumer import Consumer

from resilience.deadletter.quarantine import quarantine_message
from resilience.task import RUNTIME_SETTING, ResilienceRuntime

__all__ = ["QuarantiningConsumer", "malformed_headers"]

_log = structlog.get_logger("alchemiser.consumer")


def _number_or_none(value: Any) -> bool:
    if value is None:
        return True
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def malformed_headers(headers: Any) -> str | None:
    """Why the headers Celery's pool trusts blindly cannot be run with, or None if they can."""
    if not isinstance(headers, dict):
        return None  # not protocol 2: Celery's own checks apply
    timelimit = headers.get("timelimit")
    if timelimit is not None and not (
        isinstance(timelimit, list | tuple)
        and len(timelimit) == 2
        and all(_number_or_none(limit) for limit in timelimit)
    ):
        return f"timelimit header is not [hard, soft] seconds: {str(timelimit)[:100]}"
    retries = headers.get("retries")
    if retries is not None and not (type(retries) is int and retries >= 0):
        return f"retries header is not a count: {str(retries)[:100]}"
    return None


class QuarantiningConsumer(Consumer):
    """Celery's consumer, with every message it cannot turn into a task quarantined."""

    # Set by Consumer.__init__ from the broker connection (not in celery-types' stub).
    connection_errors: tuple[type[BaseException], ...]
    channel_errors: tuple[type[BaseException], ...]

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        handle = super().create_task_handler(*args, **kwargs)
        expected = (*self.connection_errors, *self.channel_errors)

        def on_task_received(message: Any) -> Any:
            reason = malformed_headers(getattr(message, "headers", None))
            if reason is None:
                try:
                    return handle(message)
                except expected:
                    raise  # the broker's trouble, handled by Celery's reconnect
                except Exception as exc:
                    reason = f"cannot be read as a task: {type(exc).__name__}: {exc}"
            self._quarantine(message, reason)
            return None

        return on_task_received

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        """A body it cannot decode (not JSON, a refused content type such as pickle, an item
        the transport found unreadable): quarantined and acknowledged, not only logged."""
        self._quarantine(message, f"cannot be decoded: {type(exc).__name__}: {exc}")

    def _quarantine(self, message: Any, reason: str) -> None:
        provider: Callable[[], ResilienceRuntime] = self.app.conf[RUNTIME_SETTING]
        quarantine_message(provider(), message, reason=reason, hostname=str(self.hostname or ""))
        if not message.acknowledged:
            message.ack_log_error(_log, self.connection_errors)
