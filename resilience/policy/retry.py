"""Retry policy: the frozen data each error class declares about how it is handled."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from resilience.policy.backoff import BackoffStrategy, Exponential, Jitter

__all__ = ["ErrorSeverity", "RetryPolicy", "never_retry"]


class ErrorSeverity(enum.Enum):
    """How badly an error hurts; drives escalation."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How an error class is retried, escalated and counted.

    ``max_attempts`` counts every run of the task body, the first included, so 1 means
    "never retry". ``defer`` marks errors that mean "not now" rather than "failed" (market
    closed, breaker open): the task waits the error's own ``retry_after_s`` without spending
    an attempt.
    """

    retryable: bool = False
    max_attempts: int = 1
    backoff: BackoffStrategy = field(default_factory=Exponential)
    jitter: Jitter = Jitter.FULL
    cap_s: float = 60.0
    severity: ErrorSeverity = ErrorSeverity.MEDIUM
    escalate: bool = True
    counts_against_breaker: bool = False
    honour_retry_after: bool = True
    defer: bool = False

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.cap_s < 0:
            raise ValueError(f"cap_s must be >= 0, got {self.cap_s}")
        if self.retryable and self.max_attempts == 1 and not self.defer:
            raise ValueError("a retryable policy needs max_attempts >= 2")

    def with_overrides(self, **changes: object) -> RetryPolicy:
        """A copy with some fields changed (subclasses inherit a parent's and tweak it)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def never_retry(
    severity: ErrorSeverity = ErrorSeverity.MEDIUM, *, escalate: bool = True
) -> RetryPolicy:
    """A policy for errors that retrying cannot fix (bad input, no funds, misconfiguration)."""
    return RetryPolicy(retryable=False, max_attempts=1, severity=severity, escalate=escalate)
