"""Messages the worker refuses before any task runs go to quarantine, not only to a log line.

Celery signals ``task_unknown`` for an unregistered task name and ``task_rejected`` for a
message it cannot accept as a task (an ETA or expiry it cannot read, a body in no task
format); it has acknowledged or rejected the message by then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery, signals

from resilience.deadletter.quarantine import quarantine_message
from resilience.task import ResilienceRuntime

__all__ = ["quarantine_refused_messages"]


def quarantine_refused_messages(app: Celery, runtime: Callable[[], ResilienceRuntime]) -> None:
    """Connect the signals of ``app``'s consumers to quarantine (``quarantine_message``)."""

    def ours(sender: Any) -> bool:
        return getattr(sender, "app", None) is app

    def keep(sender: Any, message: Any, reason: str) -> None:
        hostname = str(getattr(sender, "hostname", "") or "")
        quarantine_message(runtime(), message, reason=reason, hostname=hostname)

    def on_unknown(sender: Any, message: Any, name: Any = None, **_: Any) -> None:
        if ours(sender):
            keep(sender, message, f"unregistered task name {str(name)[:128]!r}")

    def on_rejected(sender: Any, message: Any, exc: BaseException | None = None, **_: Any) -> None:
        if ours(sender):
            reason = f"invalid task message: {exc}" if exc else "not a Celery task message"
            keep(sender, message, reason)

    signals.task_unknown.connect(on_unknown, weak=False)
    signals.task_rejected.connect(on_rejected, weak=False)
