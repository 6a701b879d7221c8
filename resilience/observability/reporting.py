"""The seam through which an error tracker (Sentry, ...) hears of a task's failures.

``ResilientTask`` tells every :class:`FailureReporter` of the runtime about each failed attempt
it retries or defers and about each final failure it dead-letters, as one
:class:`FailureReport`. What a reporter makes of them (an event, a breadcrumb) is its business;
this package imports no tracker. A reporter that raises is logged and contained: it never
changes what happens to the task.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import structlog

from resilience.errors import AlchemiserError
from resilience.guard.admission import Admission

__all__ = ["FailureAction", "FailureReport", "FailureReporter", "report_to"]

# "recovered": a recovery strategy did the work of the failed attempt; the task succeeded.
FailureAction = Literal["retry", "defer", "dead_letter", "recovered"]

_log = structlog.get_logger("alchemiser.reporting")


@dataclass(frozen=True, slots=True)
class FailureReport:
    """One failure of one delivery of a task, and what the task does about it.

    Nothing here is scrubbed: a reporter scrubs what it sends. ``attempts`` is the dead letter's
    attempt history (empty for a retry or a deferral).
    """

    action: FailureAction
    error: AlchemiserError
    cause: BaseException | None
    task_name: str
    task_id: str
    component: str
    reason: str
    retry_count: int
    resources: tuple[str, ...] = ()
    admission: Admission | None = None
    countdown_s: float = 0.0
    dead_letter_id: str | None = None
    idempotency_key: str | None = None
    attempts: tuple[dict[str, Any], ...] = ()
    # What the recovery strategies did about this failure (RecoveryResult records, unscrubbed).
    recovery: tuple[dict[str, Any], ...] = ()


class FailureReporter(Protocol):
    """Somewhere a task's failures are reported (an error tracker)."""

    def report(self, report: FailureReport) -> None:
        """Take one report; called in the task's thread, so it must be quick."""


def report_to(reporters: Iterable[FailureReporter], report: FailureReport) -> None:
    """Give ``report`` to every reporter; one that raises is logged, the others still run."""
    for reporter in reporters:
        try:
            reporter.report(report)
        except Exception as failure:  # a tracker's fault must not change the task's fate
            _log.error(
                "failure_report_failed",
                reporter=type(reporter).__name__,
                task_id=report.task_id,
                error=repr(failure),
            )
