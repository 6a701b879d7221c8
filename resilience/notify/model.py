"""What a person is told about failures: one :class:`Notification` per group of alike failures.

A notification is built from the scrubbed :class:`~resilience.policy.context.ErrorNotificationData`
the error handler produces for each final failure, so nothing secret is in it to begin with; the
channels render it (``resilience.notify.render``) and send it. Failures of the same error type in
the same component form one group (Alertmanager's ``group_by``): the group's notification
carries how many there were and the first few as examples, and says how many notifications
the rate limits held back since the last one went out.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from resilience.policy.context import ErrorNotificationData
from resilience.policy.retry import ErrorSeverity

__all__ = [
    "MAX_EXAMPLES",
    "Example",
    "Notification",
    "NotificationStatus",
    "group_key",
    "notification_from_json",
    "notification_to_json",
]

# Examples a group's notification shows; the count says how many there were.
MAX_EXAMPLES = 3


class NotificationStatus(enum.Enum):
    """A group is firing until it stops failing; then one resolved notice may follow."""

    FIRING = "firing"
    RESOLVED = "resolved"
    # Someone took it (``alchemiser alerts ack``): told to receivers that track incidents.
    ACKNOWLEDGED = "acknowledged"


def group_key(error_type: str, component: str) -> str:
    """The group a failure belongs to (also the dedup key channels such as PagerDuty use)."""
    return f"{error_type}:{component}"


def _legacy_key(document: Mapping[str, object]) -> str | None:
    """The idempotency key as written before 2026-12-05, named after the trading app's orders
    (alerts still open, escalations still in flight)."""
    value = document.get("client_order_id")
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Example:
    """One failure of a group, as much as a person needs to find it."""

    error_id: str
    message: str
    task_name: str
    operation: str
    occurred_at: str  # ISO 8601, UTC
    dead_letter_id: str | None = None
    idempotency_key: str | None = None  # what makes the task's effect happen once
    attempts: int = 0
    reason: str = ""  # why it failed for good ("retries exhausted", "not retryable", ...)

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Example:
        """An example as ``asdict`` wrote it (in the alert store, in an escalation's
        arguments)."""
        fields = {name: document[name] for name in cls.__dataclass_fields__ if name in document}
        fields.setdefault("idempotency_key", _legacy_key(document))
        return cls(**fields)

    @classmethod
    def from_data(cls, data: ErrorNotificationData) -> Example:
        """The example of one final failure."""
        return cls(
            error_id=data["error_id"],
            message=data["message"],
            task_name=data["task_name"],
            operation=data["operation"],
            occurred_at=data["occurred_at"],
            dead_letter_id=data.get("dead_letter_id"),
            idempotency_key=data.get("idempotency_key") or _legacy_key(data),
            attempts=int(data.get("attempts") or 0),
            reason=data.get("reason") or "",
        )


@dataclass(frozen=True, slots=True)
class Notification:
    """One message about one group of failures, whatever the channel."""

    key: str  # group_key(error_type, component)
    severity: ErrorSeverity
    error_type: str
    component: str
    count: int  # failures in the group since it started firing
    examples: tuple[Example, ...]
    status: NotificationStatus = NotificationStatus.FIRING
    # Notifications of this severity and error type the rate limits held back since the last
    # one that went out (summarised here, never silently dropped).
    held_back: int = 0
    runbook_url: str | None = None
    dead_letter_url: str | None = None  # where an operator inspects the dead letters

    def __post_init__(self) -> None:
        if self.key != group_key(self.error_type, self.component):
            raise ValueError(f"key {self.key!r} is not the group of its error type and component")
        if not 1 <= len(self.examples) <= MAX_EXAMPLES or self.count < len(self.examples):
            raise ValueError(
                f"a notification has 1 to {MAX_EXAMPLES} examples and a count of at least as"
                f" many: {len(self.examples)} examples, count {self.count}"
            )
        if self.held_back < 0:
            raise ValueError(f"held_back is a count: {self.held_back}")

    @classmethod
    def from_failure(
        cls,
        data: ErrorNotificationData,
        *,
        runbook_url: str | None = None,
        dead_letter_url: str | None = None,
    ) -> Notification:
        """The notification of a group that holds this one failure."""
        return cls(
            key=group_key(data["error_type"], data["component"]),
            severity=ErrorSeverity(data["severity"]),
            error_type=data["error_type"],
            component=data["component"],
            count=1,
            examples=(Example.from_data(data),),
            runbook_url=runbook_url,
            dead_letter_url=dead_letter_url,
        )

    @classmethod
    def for_group(
        cls,
        failures: Sequence[ErrorNotificationData],
        *,
        count: int | None = None,
        runbook_url: str | None = None,
        dead_letter_url: str | None = None,
    ) -> Notification:
        """The notification of a group of alike failures (oldest first); ``count`` when more
        failed than are given here."""
        if not failures:
            raise ValueError("a group has at least one failure")
        first = failures[0]
        key = group_key(first["error_type"], first["component"])
        strangers = [f for f in failures if group_key(f["error_type"], f["component"]) != key]
        if strangers:
            raise ValueError(f"failures of another group in group {key}: {len(strangers)}")
        total = len(failures) if count is None else count
        if total < len(failures):
            raise ValueError(f"count {total} is below the {len(failures)} failures given")
        return cls(
            key=key,
            severity=max((ErrorSeverity(f["severity"]) for f in failures), key=_rank),
            error_type=first["error_type"],
            component=first["component"],
            count=total,
            examples=tuple(Example.from_data(f) for f in failures[:MAX_EXAMPLES]),
            runbook_url=runbook_url,
            dead_letter_url=dead_letter_url,
        )

    @property
    def title(self) -> str:
        """One line: severity, what, where, how many."""
        times = f" x{self.count}" if self.count > 1 else ""
        if self.status is not NotificationStatus.FIRING:
            return f"[{self.status.value.upper()}] {self.error_type} in {self.component}"
        return f"[{self.severity.value.upper()}] {self.error_type} in {self.component}{times}"

    @property
    def first_at(self) -> str:
        """When the oldest example failed."""
        return self.examples[0].occurred_at

    def resolved(self) -> Notification:
        """The resolved notice of this group (what was held back is still said)."""
        return replace(self, status=NotificationStatus.RESOLVED)

    def acknowledged(self) -> Notification:
        """The acknowledged notice of this group."""
        return replace(self, status=NotificationStatus.ACKNOWLEDGED)

    def with_held_back(self, held_back: int) -> Notification:
        """This notification, also saying how many were held back before it."""
        return replace(self, held_back=held_back)


def notification_to_json(notification: Notification) -> dict[str, Any]:
    """The notification as a JSON document (a task's argument, when a send is retried later)."""
    document = asdict(notification)
    document["severity"] = notification.severity.value
    document["status"] = notification.status.value
    return document


def notification_from_json(document: dict[str, Any]) -> Notification:
    """The notification :func:`notification_to_json` wrote."""
    return Notification(
        key=document["key"],
        severity=ErrorSeverity(document["severity"]),
        error_type=document["error_type"],
        component=document["component"],
        count=int(document["count"]),
        examples=tuple(Example.from_json(example) for example in document["examples"]),
        status=NotificationStatus(document["status"]),
        held_back=int(document["held_back"]),
        runbook_url=document.get("runbook_url"),
        dead_letter_url=document.get("dead_letter_url"),
    )


_RANK = {
    ErrorSeverity.LOW: 0,
    ErrorSeverity.MEDIUM: 1,
    ErrorSeverity.HIGH: 2,
    ErrorSeverity.CRITICAL: 3,
}


def _rank(severity: ErrorSeverity) -> int:
    return _RANK[severity]
