"""Structured error context and the typed report shapes that travel with errors.

Everything here is JSON-shaped: it goes into structured logs, dead letters and notifications.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

__all__ = [
    "ErrorContext",
    "ErrorDetailInfo",
    "ErrorDetailsData",
    "ErrorNotificationData",
    "ErrorReportSummary",
    "ErrorSummaryData",
]


def _utc_now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """Where and in which request an error happened."""

    operation: str
    component: str
    function_name: str | None = None
    request_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    additional_data: dict[str, Any] = field(default_factory=dict)
    timestamp: str = field(default_factory=_utc_now_iso)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorContext:
        """Rebuild from :meth:`to_dict` output, ignoring unknown keys."""
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


class ErrorDetailInfo(TypedDict, total=False):
    """Extra facts about a failure, all optional; anything else goes in ``extra``."""

    http_status: int
    retry_after_s: float
    resource: str
    task_name: str
    task_id: str
    attempt: int
    extra: dict[str, Any]


class ErrorDetailsData(TypedDict):
    """The JSON form of one handled error (:class:`resilience.policy.handler.ErrorDetails`)."""

    error_id: str
    error_type: str
    message: str
    category: str
    severity: str
    recoverable: bool
    component: str
    context: dict[str, Any]
    additional_data: ErrorDetailInfo
    traceback: str | None
    timestamp: str


class ErrorSummaryData(TypedDict):
    """How many errors of one category, with the most recent examples."""

    count: int
    errors: list[ErrorDetailsData]


class ErrorReportSummary(TypedDict):
    """Errors grouped by category; a category with no errors is ``None``."""

    critical: ErrorSummaryData | None
    trading: ErrorSummaryData | None
    data: ErrorSummaryData | None
    strategy: ErrorSummaryData | None
    configuration: ErrorSummaryData | None
    notification: ErrorSummaryData | None
    warning: ErrorSummaryData | None


class ErrorNotificationData(TypedDict):
    """What an escalation needs to tell a person about a final failure."""

    severity: str
    priority: str
    title: str
    error_type: str
    error_id: str
    message: str
    component: str
    operation: str
    task_name: str
    occurred_at: str
    dead_letter_id: NotRequired[str | None]
    idempotency_key: NotRequired[str | None]
    attempts: NotRequired[int]
    reason: NotRequired[str]
