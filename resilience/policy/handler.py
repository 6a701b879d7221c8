"""ErrorHandler: classify, record and describe one error; composed, not a god object.

It does three small things with parts passed in: the classifier maps a foreign exception into
the hierarchy, recorders keep it (in memory here; fleet-wide metrics plug in the same way), and
a structured log line carries the error's context. Retrying, dead-lettering and notifying are
other modules' jobs.
"""

from __future__ import annotations

import threading
import traceback
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog

from resilience.errors import (
    AlchemiserError,
    ConfigurationError,
    DataProviderError,
    IndicatorCalculationError,
    NotificationError,
    StrategyExecutionError,
    TradingClientError,
)
from resilience.policy.classify import Classifier, default_classifier
from resilience.policy.context import (
    ErrorContext,
    ErrorDetailInfo,
    ErrorDetailsData,
    ErrorNotificationData,
    ErrorReportSummary,
    ErrorSummaryData,
)
from resilience.policy.retry import ErrorSeverity
from resilience.scrub import Scrubber

__all__ = [
    "ErrorDetails",
    "ErrorHandler",
    "ErrorRecorder",
    "RecentErrors",
    "category_of",
    "notification_data",
]

_log = structlog.get_logger("alchemiser.errors")

_PRIORITY = {
    ErrorSeverity.CRITICAL: "P1",
    ErrorSeverity.HIGH: "P2",
    ErrorSeverity.MEDIUM: "P3",
    ErrorSeverity.LOW: "P4",
}


def category_of(error: AlchemiserError) -> str:
    """The report category: critical first, then by family; everything else is a warning."""
    if error.severity is ErrorSeverity.CRITICAL:
        return "critical"
    families: tuple[tuple[type[AlchemiserError], str], ...] = (
        (TradingClientError, "trading"),
        (DataProviderError, "data"),
        (StrategyExecutionError, "strategy"),
        (IndicatorCalculationError, "strategy"),
        (ConfigurationError, "configuration"),
        (NotificationError, "notification"),
    )
    for family, name in families:
        if isinstance(error, family):
            return name
    return "warning"


@dataclass(frozen=True, slots=True)
class ErrorDetails:
    """The typed result of :meth:`ErrorHandler.handle_error`."""

    error: AlchemiserError
    category: str
    component: str
    context: ErrorContext
    additional_data: ErrorDetailInfo
    traceback: str | None
    timestamp: str
    should_continue: bool

    def to_data(self, scrub: Scrubber) -> ErrorDetailsData:
        """The JSON form, scrubbed of secrets."""
        error = self.error
        return {
            "error_id": error.error_id,
            "error_type": error.error_type,
            "message": scrub.text(error.message),
            "category": self.category,
            "severity": error.severity.value,
            "recoverable": error.recoverable,
            "component": self.component,
            "context": scrub(self.context.to_dict()),
            "additional_data": scrub(dict(self.additional_data)),
            "traceback": scrub.text(self.traceback) if self.traceback else None,
            "timestamp": self.timestamp,
        }


class ErrorRecorder(Protocol):
    """Somewhere handled errors are kept (memory, Redis metrics, ...)."""

    def record(self, details: ErrorDetails) -> None: ...


class RecentErrors:
    """The newest errors per category in this process, bounded; feeds the report summary."""

    def __init__(self, *, per_category: int = 50) -> None:
        self._lock = threading.Lock()
        self._per_category = per_category
        self._counts: dict[str, int] = {}
        self._recent: dict[str, deque[ErrorDetails]] = {}

    def record(self, details: ErrorDetails) -> None:
        with self._lock:
            self._counts[details.category] = self._counts.get(details.category, 0) + 1
            self._recent.setdefault(details.category, deque(maxlen=self._per_category)).append(
                details
            )

    def summary(self, scrub: Scrubber) -> ErrorReportSummary:
        """Counts and examples per category (``None`` where there were none)."""
        with self._lock:

            def part(name: str) -> ErrorSummaryData | None:
                if name not in self._counts:
                    return None
                return {
                    "count": self._counts[name],
                    "errors": [d.to_data(scrub) for d in self._recent[name]],
                }

            return {
                "critical": part("critical"),
                "trading": part("trading"),
                "data": part("data"),
                "strategy": part("strategy"),
                "configuration": part("configuration"),
                "notification": part("notification"),
                "warning": part("warning"),
            }


class ErrorHandler:
    """Classifies, records and logs errors; returns :class:`ErrorDetails`."""

    def __init__(
        self,
        *,
        classifier: Classifier | None = None,
        recorders: Iterable[ErrorRecorder] = (),
        scrubber: Scrubber | None = None,
    ) -> None:
        self._classifier = classifier or default_classifier()
        self._recorders = tuple(recorders)
        self._scrub = scrubber or Scrubber()

    @property
    def classifier(self) -> Classifier:
        """The classifier this handler maps foreign exceptions with."""
        return self._classifier

    def handle_error(
        self,
        error: BaseException,
        context: ErrorContext,
        component: str,
        additional_data: ErrorDetailInfo | None = None,
        should_continue: bool = True,
        *,
        classified: AlchemiserError | None = None,
    ) -> ErrorDetails:
        """Classify ``error`` into the hierarchy (unless the caller did: ``classified``), record
        it and log it with its context."""
        if classified is None:
            classified = self._classifier.classify(error, component=component)
        if classified.context is None:
            classified.context = context
        tb = "".join(traceback.format_exception(error)) if error.__traceback__ else None
        details = ErrorDetails(
            error=classified,
            category=category_of(classified),
            component=component,
            context=context,
            additional_data=additional_data or {},
            traceback=tb,
            timestamp=datetime.now(UTC).isoformat(),
            should_continue=should_continue,
        )
        for recorder in self._recorders:
            try:
                recorder.record(details)
            except Exception:  # one failing recorder must not hide the error or the others
                _log.exception("error_recorder_failed", recorder=type(recorder).__name__)
        _log.warning(
            "error_handled",
            error_type=classified.error_type,
            error_id=classified.error_id,
            severity=classified.severity.value,
            category=details.category,
            component=component,
            operation=context.operation,
            message=self._scrub.text(classified.message),
            additional_data=self._scrub(dict(additional_data or {})),
            should_continue=should_continue,
        )
        return details


def notification_data(
    error: AlchemiserError,
    *,
    component: str,
    operation: str,
    task_name: str,
    scrub: Scrubber,
    dead_letter_id: str | None = None,
    idempotency_key: str | None = None,
    attempts: int = 0,
    reason: str = "",
) -> ErrorNotificationData:
    """What an escalation needs about a final failure, scrubbed."""
    return {
        "severity": error.severity.value,
        "priority": _PRIORITY[error.severity],
        "title": f"{error.error_type} in {component}: {operation}",
        "error_type": error.error_type,
        "error_id": error.error_id,
        "message": scrub.text(error.message),
        "component": component,
        "operation": operation,
        "task_name": task_name,
        "occurred_at": datetime.now(UTC).isoformat(),
        "dead_letter_id": dead_letter_id,
        "idempotency_key": idempotency_key,
        "attempts": attempts,
        "reason": reason,
    }
