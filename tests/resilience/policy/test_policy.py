"""Tests of the frozen RetryPolicy data and its validation in ``resilience.policy.retry``."""

from __future__ import annotations

import dataclasses

import pytest

from resilience.policy.backoff import Decorrelated, Exponential, Fixed, Jitter
from resilience.policy.retry import ErrorSeverity, RetryPolicy, never_retry


def test_default_policy_never_retries_with_documented_defaults() -> None:
    """RetryPolicy() is a one-attempt, non-retryable policy with the documented defaults."""
    policy = RetryPolicy()
    assert policy.retryable is False
    assert policy.max_attempts == 1
    assert policy.backoff == Exponential(base_s=1.0, factor=2.0)
    assert policy.jitter is Jitter.FULL
    assert policy.cap_s == 60.0
    assert policy.severity is ErrorSeverity.MEDIUM
    assert policy.escalate is True
    assert policy.counts_against_breaker is False
    assert policy.honour_retry_after is True
    assert policy.defer is False


@pytest.mark.parametrize("max_attempts", [0, -1, -100])
def test_max_attempts_below_one_raises(max_attempts: int) -> None:
    """max_attempts < 1 is rejected with ValueError naming the field."""
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        RetryPolicy(max_attempts=max_attempts)


@pytest.mark.parametrize("cap_s", [-0.001, -1.0, -3600.0])
def test_negative_cap_raises(cap_s: float) -> None:
    """A negative cap_s is rejected with ValueError naming the field."""
    with pytest.raises(ValueError, match="cap_s must be >= 0"):
        RetryPolicy(cap_s=cap_s)


def test_zero_cap_is_allowed() -> None:
    """cap_s = 0 (retry immediately) is a valid policy."""
    assert RetryPolicy(retryable=True, max_attempts=3, cap_s=0.0).cap_s == 0.0


def test_retryable_with_a_single_attempt_raises() -> None:
    """A retryable policy with max_attempts 1 is contradictory and rejected."""
    with pytest.raises(ValueError, match="max_attempts >= 2"):
        RetryPolicy(retryable=True, max_attempts=1)


def test_retryable_with_two_attempts_is_valid() -> None:
    """max_attempts 2 is the smallest valid retryable policy (one retry)."""
    policy = RetryPolicy(retryable=True, max_attempts=2)
    assert policy.retryable is True
    assert policy.max_attempts == 2


def test_deferring_policy_may_keep_a_single_attempt() -> None:
    """A defer policy spends no attempts, so retryable with max_attempts 1 is allowed."""
    policy = RetryPolicy(retryable=True, max_attempts=1, defer=True)
    assert policy.defer is True
    assert policy.max_attempts == 1


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("retryable", True),
        ("max_attempts", 9),
        ("cap_s", 1.0),
        ("jitter", Jitter.NONE),
        ("severity", ErrorSeverity.CRITICAL),
        ("defer", True),
    ],
)
def test_policy_is_frozen(field_name: str, value: object) -> None:
    """Assigning to any field of a policy raises FrozenInstanceError and changes nothing."""
    policy = RetryPolicy(retryable=True, max_attempts=3)
    before = dataclasses.asdict(policy)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(policy, field_name, value)
    assert dataclasses.asdict(policy) == before


def test_policy_has_no_instance_dict() -> None:
    """The policy is slotted: no per-instance __dict__ to smuggle state into."""
    assert not hasattr(RetryPolicy(), "__dict__")


def test_with_overrides_returns_a_changed_copy() -> None:
    """with_overrides changes only the named fields and leaves the original untouched."""
    base = RetryPolicy(
        retryable=True,
        max_attempts=4,
        backoff=Exponential(base_s=1.0, factor=2.0),
        cap_s=30.0,
        severity=ErrorSeverity.HIGH,
        counts_against_breaker=True,
    )
    changed = base.with_overrides(max_attempts=6, backoff=Decorrelated(base_s=1.0))
    assert changed is not base
    assert changed.max_attempts == 6
    assert changed.backoff == Decorrelated(base_s=1.0)
    assert changed.cap_s == 30.0
    assert changed.severity is ErrorSeverity.HIGH
    assert changed.counts_against_breaker is True
    assert base.max_attempts == 4
    assert base.backoff == Exponential(base_s=1.0, factor=2.0)


def test_with_overrides_without_changes_is_an_equal_copy() -> None:
    """with_overrides() with no changes gives an equal (and equally hashed) policy."""
    base = RetryPolicy(retryable=True, max_attempts=3, backoff=Fixed(delay_s=2.0))
    copy = base.with_overrides()
    assert copy == base
    assert hash(copy) == hash(base)


def test_with_overrides_validates_the_result() -> None:
    """An override that makes the policy invalid raises ValueError like the constructor."""
    base = RetryPolicy(retryable=True, max_attempts=3)
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        base.with_overrides(max_attempts=0)
    with pytest.raises(ValueError, match="cap_s must be >= 0"):
        base.with_overrides(cap_s=-1.0)
    with pytest.raises(ValueError, match="max_attempts >= 2"):
        base.with_overrides(max_attempts=1)


def test_with_overrides_rejects_unknown_fields() -> None:
    """with_overrides refuses a field the policy does not have."""
    with pytest.raises(TypeError):
        RetryPolicy().with_overrides(max_retries=3)


def test_never_retry_defaults() -> None:
    """never_retry() is non-retryable, one attempt, MEDIUM severity and escalated."""
    policy = never_retry()
    assert policy.retryable is False
    assert policy.max_attempts == 1
    assert policy.defer is False
    assert policy.severity is ErrorSeverity.MEDIUM
    assert policy.escalate is True


@pytest.mark.parametrize("severity", list(ErrorSeverity))
@pytest.mark.parametrize("escalate", [True, False])
def test_never_retry_carries_severity_and_escalation(
    severity: ErrorSeverity, escalate: bool
) -> None:
    """never_retry passes its severity and escalate flag through and still never retries."""
    policy = never_retry(severity, escalate=escalate)
    assert policy.severity is severity
    assert policy.escalate is escalate
    assert policy.retryable is False
    assert policy.max_attempts == 1


def test_error_severity_members() -> None:
    """ErrorSeverity has exactly LOW, MEDIUM, HIGH, CRITICAL with lowercase values."""
    assert [(m.name, m.value) for m in ErrorSeverity] == [
        ("LOW", "low"),
        ("MEDIUM", "medium"),
        ("HIGH", "high"),
        ("CRITICAL", "critical"),
    ]
