"""The Alchemiser error hierarchy; each class declares its handling as a frozen policy.

Subclasses inherit their parent's ``policy`` unless they set their own. One resolver
(:func:`resilience.policy.resolver.decide`) turns (error, attempt) into a decision; no task
hard-codes retry rules.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from resilience.policy.backoff import (
    Decorrelated,
    Exponential,
    Fixed,
    Jitter,
    compute_countdown,
)
from resilience.policy.context import ErrorContext
from resilience.policy.retry import ErrorSeverity, RetryPolicy, never_retry

__all__ = [
    "AdmissionRefusedError",
    "AlchemiserError",
    "CircuitBreakerOpenError",
    "ConfigurationError",
    "DataProviderError",
    "DatabaseError",
    "DuplicateOrderError",
    "EnvironmentError",
    "ErrorSeverity",
    "FileOperationError",
    "IdempotencyConflictError",
    "IndicatorCalculationError",
    "InsufficientFundsError",
    "LoggingError",
    "MalformedMessageError",
    "MarketClosedError",
    "MarketDataError",
    "NotificationError",
    "OrderExecutionError",
    "PoisonMessageError",
    "PositionValidationError",
    "RateLimitError",
    "RemoteServiceError",
    "S3OperationError",
    "SecurityError",
    "StaleOrderError",
    "StrategyExecutionError",
    "TradingClientError",
    "ValidationError",
    "WebSocketError",
    "error_class_by_name",
    "error_classes",
]


class AlchemiserError(Exception):
    """Base of every Alchemiser error. Unknown failures are not retried by default."""

    policy: ClassVar[RetryPolicy] = never_retry(ErrorSeverity.MEDIUM)

    def __init__(
        self,
        message: str,
        *,
        context: ErrorContext | None = None,
        severity: ErrorSeverity | None = None,
        retry_count: int = 0,
        retry_after_s: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_id = str(uuid.uuid4())
        self.context = context
        self.severity = severity if severity is not None else self.policy.severity
        self.recoverable = self.policy.retryable or self.policy.defer
        self.retry_count = retry_count
        self.max_retries = self.policy.max_attempts - 1
        self.retry_after_s = retry_after_s
        self.details: dict[str, Any] = dict(details or {})

    def should_retry(self) -> bool:
        """Whether another attempt is allowed after ``retry_count`` retries."""
        if self.policy.defer:
            return True
        return self.recoverable and self.retry_count < self.max_retries

    def wait_s(self, now_s: float) -> float | None:
        """How long, from ``now_s``, a deferral of this error waits (``None``: no hint); the
        server's ``retry_after_s`` unless a subclass knows better."""
        return self.retry_after_s

    def get_retry_delay(self, rng: Any = None) -> float:
        """Seconds before the next attempt by the class policy (server hint wins if longer)."""
        policy = self.policy
        delay = compute_countdown(
            policy.backoff, self.retry_count + 1, jitter=policy.jitter, cap_s=policy.cap_s, rng=rng
        )
        if self.retry_after_s is not None and policy.honour_retry_after:
            delay = max(delay, self.retry_after_s)
        return delay

    @property
    def error_type(self) -> str:
        """The class name, as used in dead letters, metrics and CLI filters."""
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (message not scrubbed: scrub before storing)."""
        return {
            "error_id": self.error_id,
            "error_type": self.error_type,
            "message": self.message,
            "severity": self.severity.value,
            "recoverable": self.recoverable,
            "retry_count": self.retry_count,
            "max_retries": self.max_retries,
            "retry_after_s": self.retry_after_s,
            "context": self.context.to_dict() if self.context else None,
            "details": self.details,
        }


class ConfigurationError(AlchemiserError):
    """Settings are missing or contradict each other; fix the config, do not retry."""

    policy = never_retry(ErrorSeverity.CRITICAL)


class EnvironmentError(ConfigurationError):  # the plan's name; shadows the builtin alias
    """The process environment is unusable (missing variable, unreachable dependency)."""


# A remote side's transient failure: a few tries with growing, fully jittered waits.
_TRANSIENT_REMOTE = RetryPolicy(
    retryable=True,
    max_attempts=4,
    backoff=Exponential(base_s=1.0, factor=2.0),
    jitter=Jitter.FULL,
    cap_s=30.0,
    severity=ErrorSeverity.MEDIUM,
    counts_against_breaker=True,
)


class RemoteServiceError(AlchemiserError):
    """A remote service failed transiently (5xx, timeout, connection reset): the classifier's
    default for a component whose application named no error family of its own."""

    policy = _TRANSIENT_REMOTE


class DataProviderError(AlchemiserError):
    """A market-data provider failed; usually transient."""

    policy = _TRANSIENT_REMOTE


class MarketDataError(DataProviderError):
    """Quotes, bars or snapshots could not be fetched."""


class WebSocketError(DataProviderError):
    """A streaming connection dropped; reconnect with decorrelated jitter."""

    policy = DataProviderError.policy.with_overrides(
        max_attempts=6, backoff=Decorrelated(base_s=1.0), jitter=Jitter.NONE
    )


class TradingClientError(AlchemiserError):
    """The trading API failed transiently (5xx, timeout, connection reset)."""

    policy = RetryPolicy(
        retryable=True,
        max_attempts=5,
        backoff=Exponential(base_s=0.5, factor=2.0),
        jitter=Jitter.EQUAL,
        cap_s=30.0,
        severity=ErrorSeverity.HIGH,
        counts_against_breaker=True,
    )


class OrderExecutionError(TradingClientError):
    """The broker refused the order (4xx); the same order would be refused again."""

    policy = never_retry(ErrorSeverity.HIGH)


class InsufficientFundsError(OrderExecutionError):
    """Not enough buying power; never retried."""


class DuplicateOrderError(OrderExecutionError):
    """The broker already has an order with this ``client_order_id`` (Alpaca's 422)."""

    policy = never_retry(ErrorSeverity.LOW, escalate=False)


class IdempotencyConflictError(OrderExecutionError):
    """The ``client_order_id`` already names a different order at the broker: the request was
    not placed, and reporting it as placed would hide a lost order."""


class PositionValidationError(TradingClientError):
    """The position does not allow the order (selling more than held)."""

    policy = never_retry(ErrorSeverity.MEDIUM)


class MarketClosedError(TradingClientError):
    """The market is closed; the order waits for the next session open (or its deadline)."""

    policy = RetryPolicy(retryable=False, defer=True, severity=ErrorSeverity.LOW, escalate=True)

    def __init__(self, message: str, *, next_open: datetime | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.next_open = next_open

    def wait_s(self, now_s: float) -> float | None:
        """Until the next session opens, if known."""
        if self.next_open is None:
            return super().wait_s(now_s)
        return max(self.next_open.timestamp() - now_s, 0.0)


class StrategyExecutionError(AlchemiserError):
    """A strategy raised while deciding; a code or data problem, not transient."""

    policy = never_retry(ErrorSeverity.HIGH)


class IndicatorCalculationError(AlchemiserError):
    """An indicator could not be computed from the data given."""

    policy = never_retry(ErrorSeverity.MEDIUM)


class ValidationError(AlchemiserError):
    """Input failed validation; retrying the same input cannot help."""

    policy = never_retry(ErrorSeverity.MEDIUM)


class NotificationError(AlchemiserError):
    """A notification channel failed to deliver."""

    policy = RetryPolicy(
        retryable=True,
        max_attempts=4,
        backoff=Exponential(base_s=2.0, factor=2.0),
        jitter=Jitter.FULL,
        cap_s=60.0,
        severity=ErrorSeverity.MEDIUM,
        escalate=False,
    )


class S3OperationError(AlchemiserError):
    """Object storage failed; usually transient."""

    policy = RetryPolicy(
        retryable=True,
        max_attempts=4,
        backoff=Exponential(base_s=1.0, factor=2.0),
        cap_s=30.0,
        severity=ErrorSeverity.MEDIUM,
    )


class RateLimitError(AlchemiserError):
    """The remote API said "too many requests"; wait at least its Retry-After."""

    policy = RetryPolicy(
        retryable=True,
        max_attempts=6,
        backoff=Exponential(base_s=1.0, factor=2.0),
        jitter=Jitter.FULL,
        cap_s=60.0,
        severity=ErrorSeverity.MEDIUM,
        honour_retry_after=True,
    )


class LoggingError(AlchemiserError):
    """Logging itself failed; never escalated (it would log again)."""

    policy = never_retry(ErrorSeverity.LOW, escalate=False)


class FileOperationError(AlchemiserError):
    """A local file operation failed."""

    policy = RetryPolicy(
        retryable=True, max_attempts=3, backoff=Fixed(delay_s=1.0), jitter=Jitter.EQUAL, cap_s=10.0
    )


class DatabaseError(AlchemiserError):
    """A data store (Redis, SQL) failed transiently."""

    policy = RetryPolicy(
        retryable=True,
        max_attempts=5,
        backoff=Exponential(base_s=0.5, factor=2.0),
        jitter=Jitter.FULL,
        cap_s=30.0,
        severity=ErrorSeverity.HIGH,
    )


class SecurityError(AlchemiserError):
    """Authentication or authorisation failed; never retried, always escalated."""

    policy = never_retry(ErrorSeverity.CRITICAL)


class CircuitBreakerOpenError(AlchemiserError):
    """The shared breaker of a resource is open; wait until it may close."""

    policy = RetryPolicy(retryable=False, defer=True, severity=ErrorSeverity.MEDIUM)


class AdmissionRefusedError(AlchemiserError):
    """A guarded resource's rate or concurrency limit is reached; run when it has room."""

    policy = RetryPolicy(retryable=False, defer=True, severity=ErrorSeverity.LOW)


class StaleOrderError(AlchemiserError):
    """The order's ``valid_until`` passed; it is never executed late."""

    policy = never_retry(ErrorSeverity.MEDIUM)


class PoisonMessageError(AlchemiserError):
    """The task killed its worker process on every delivery; it is quarantined."""

    policy = never_retry(ErrorSeverity.CRITICAL)


class MalformedMessageError(AlchemiserError):
    """A message the worker cannot run as a task (an unregistered name, an unreadable ETA or
    expiry, no Celery task format): quarantined with its raw body, never run."""

    policy = never_retry(ErrorSeverity.HIGH)


def error_classes() -> list[type[AlchemiserError]]:
    """Every class of the hierarchy, base first."""
    found: list[type[AlchemiserError]] = []
    pending: list[type[AlchemiserError]] = [AlchemiserError]
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def error_class_by_name(name: str) -> type[AlchemiserError]:
    """The hierarchy class called ``name``; ``KeyError`` with the known names otherwise."""
    for cls in error_classes():
        if cls.__name__ == name:
            return cls
    known = ", ".join(sorted(c.__name__ for c in error_classes()))
    raise KeyError(f"unknown error class {name!r}; known: {known}")
