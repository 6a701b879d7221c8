"""Tests of ``IdempotencyConflictError``: a reused idempotency key is never retried."""

from __future__ import annotations

from resilience.errors import (
    IdempotencyConflictError,
    OrderExecutionError,
    error_class_by_name,
)
from resilience.policy.retry import ErrorSeverity


def test_conflict_is_a_non_retryable_high_severity_order_error() -> None:
    """It sits under OrderExecutionError, is tried once, is HIGH and escalates."""
    error = IdempotencyConflictError("client_order_id K already names a different order")
    assert isinstance(error, OrderExecutionError)
    assert error_class_by_name("IdempotencyConflictError") is IdempotencyConflictError
    assert (error.policy.retryable, error.policy.defer, error.policy.max_attempts) == (
        False,
        False,
        1,
    )
    assert error.severity is ErrorSeverity.HIGH
    assert error.policy.escalate is True
    assert error.should_retry() is False
