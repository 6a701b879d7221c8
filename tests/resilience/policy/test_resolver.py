"""Tests of ``resilience.policy.resolver.decide``: retry, defer or dead-letter after a failure."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilience import errors
from resilience.policy.backoff import compute_countdown
from resilience.policy.resolver import Action, Decision, decide

NEXT_OPEN = datetime(2025, 1, 2, 14, 30, tzinfo=UTC)
NOW_S = NEXT_OPEN.timestamp() - 3_600.0  # an hour before the session opens

HIERARCHY: list[type[errors.AlchemiserError]] = [
    obj
    for obj in (getattr(errors, name) for name in errors.__all__)
    if isinstance(obj, type) and issubclass(obj, errors.AlchemiserError)
]
RETRYABLE = [c for c in HIERARCHY if c.policy.retryable and not c.policy.defer]
NOT_RETRYABLE = [c for c in HIERARCHY if not c.policy.retryable and not c.policy.defer]
DEFERRING = [c for c in HIERARCHY if c.policy.defer]

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def _name(cls: type[errors.AlchemiserError]) -> str:
    return cls.__name__


def test_hierarchy_partitions_as_expected() -> None:
    """The fixture lists cover the known retryable, permanent and deferring classes."""
    assert errors.RateLimitError in RETRYABLE
    assert errors.TradingClientError in RETRYABLE
    assert errors.ValidationError in NOT_RETRYABLE
    assert errors.InsufficientFundsError in NOT_RETRYABLE
    assert set(DEFERRING) == {
        errors.MarketClosedError,
        errors.CircuitBreakerOpenError,
        errors.AdmissionRefusedError,
    }


# --- not retryable / retryable -----------------------------------------------------------


@pytest.mark.parametrize("cls", NOT_RETRYABLE, ids=_name)
def test_non_retryable_dead_letters_after_the_first_attempt(
    cls: type[errors.AlchemiserError],
) -> None:
    """A permanent error goes straight to the dead letters with countdown 0."""
    decision = decide(cls("permanent"), 1, now_s=NOW_S, max_countdown_s=600.0)
    assert decision == Decision(Action.DEAD_LETTER, 0.0, "not retryable")


@pytest.mark.parametrize("cls", RETRYABLE, ids=_name)
def test_retryable_retries_until_attempts_are_exhausted(
    cls: type[errors.AlchemiserError],
) -> None:
    """Attempts 1..max-1 retry within the policy cap; attempt max dead-letters as exhausted."""
    max_attempts = cls.policy.max_attempts
    for attempt in range(1, max_attempts):
        decision = decide(
            cls("transient"), attempt, now_s=NOW_S, max_countdown_s=600.0, rng=random.Random(1)
        )
        assert decision.action is Action.RETRY
        assert decision.reason == f"retry {attempt} of {max_attempts - 1}"
        assert 0.0 <= decision.countdown_s <= cls.policy.cap_s
    for attempt in (max_attempts, max_attempts + 3):
        decision = decide(cls("transient"), attempt, now_s=NOW_S, max_countdown_s=600.0)
        assert decision.action is Action.DEAD_LETTER
        assert decision.countdown_s == 0.0
        assert "attempts exhausted" in decision.reason
    exhausted = decide(cls("transient"), max_attempts, now_s=NOW_S, max_countdown_s=600.0)
    assert exhausted.reason == f"attempts exhausted ({max_attempts} of {max_attempts})"


def test_trading_retry_countdown_follows_the_policy_backoff() -> None:
    """TradingClientError's 2nd retry is the EQUAL-jittered 1 s backoff of its policy."""
    policy = errors.TradingClientError.policy
    decision = decide(
        errors.TradingClientError("503"),
        2,
        now_s=NOW_S,
        max_countdown_s=600.0,
        rng=random.Random(3),
    )
    expected = compute_countdown(
        policy.backoff, 2, jitter=policy.jitter, cap_s=policy.cap_s, rng=random.Random(3)
    )
    assert decision == Decision(Action.RETRY, expected, "retry 2 of 4")
    assert 0.5 <= decision.countdown_s <= 1.0


@given(
    cls=st.sampled_from(RETRYABLE),
    attempt=st.integers(min_value=1, max_value=10),
    seed=SEEDS,
)
def test_same_seed_gives_the_same_decision(
    cls: type[errors.AlchemiserError], attempt: int, seed: int
) -> None:
    """decide is a pure function of its inputs once the rng is seeded."""
    first = decide(cls("x"), attempt, now_s=NOW_S, max_countdown_s=600.0, rng=random.Random(seed))
    second = decide(cls("x"), attempt, now_s=NOW_S, max_countdown_s=600.0, rng=random.Random(seed))
    assert first == second


# --- bounds over the whole hierarchy -----------------------------------------------------


@given(
    cls=st.sampled_from(HIERARCHY),
    attempt=st.integers(min_value=1, max_value=30),
    max_countdown_s=st.floats(min_value=0.0, max_value=3_600.0, allow_nan=False),
    retry_after_s=st.none() | st.floats(min_value=0.0, max_value=100_000.0, allow_nan=False),
    next_open_in_s=st.none() | st.integers(min_value=-3_600, max_value=1_000_000),
    deadline_in_s=st.none() | st.floats(min_value=-60.0, max_value=100_000.0, allow_nan=False),
    seed=SEEDS,
)
def test_countdown_never_exceeds_max_countdown_nor_the_deadline(
    *,
    cls: type[errors.AlchemiserError],
    attempt: int,
    max_countdown_s: float,
    retry_after_s: float | None,
    next_open_in_s: int | None,
    deadline_in_s: float | None,
    seed: int,
) -> None:
    """Every decision's countdown is in [0, max_countdown_s] and lands by the deadline."""
    if cls is errors.MarketClosedError and next_open_in_s is not None:
        error: errors.AlchemiserError = errors.MarketClosedError(
            "closed",
            next_open=datetime.fromtimestamp(NOW_S + next_open_in_s, UTC),
            retry_after_s=retry_after_s,
        )
    else:
        error = cls("failed", retry_after_s=retry_after_s)
    deadline_s = None if deadline_in_s is None else NOW_S + deadline_in_s
    decision = decide(
        error,
        attempt,
        now_s=NOW_S,
        max_countdown_s=max_countdown_s,
        deadline_s=deadline_s,
        rng=random.Random(seed),
    )
    assert 0.0 <= decision.countdown_s <= max_countdown_s
    if decision.action is Action.DEAD_LETTER:
        assert decision.countdown_s == 0.0
    elif deadline_s is not None:
        assert NOW_S + decision.countdown_s <= deadline_s
    if decision.action is Action.RETRY:
        assert attempt < cls.policy.max_attempts
    if decision.action is Action.DEFER:
        assert cls.policy.defer is True


# --- Retry-After -------------------------------------------------------------------------


@given(
    attempt=st.integers(min_value=1, max_value=5),
    retry_after_s=st.floats(min_value=0.0, max_value=600.0, allow_nan=False),
    headroom_s=st.floats(min_value=0.0, max_value=3_000.0, allow_nan=False),
    seed=SEEDS,
)
def test_retry_after_is_honoured_below_max_countdown(
    attempt: int, retry_after_s: float, headroom_s: float, seed: int
) -> None:
    """With Retry-After <= max_countdown_s, the countdown is at least Retry-After."""
    policy = errors.RateLimitError.policy
    max_countdown_s = retry_after_s + headroom_s
    decision = decide(
        errors.RateLimitError("429", retry_after_s=retry_after_s),
        attempt,
        now_s=NOW_S,
        max_countdown_s=max_countdown_s,
        rng=random.Random(seed),
    )
    backoff_s = compute_countdown(
        policy.backoff, attempt, jitter=policy.jitter, cap_s=policy.cap_s, rng=random.Random(seed)
    )
    assert decision.action is Action.RETRY
    assert decision.countdown_s >= retry_after_s
    assert decision.countdown_s == min(max(backoff_s, retry_after_s), max_countdown_s)


def test_retry_after_known_value() -> None:
    """A 429 with Retry-After 45 s on the first attempt retries in exactly 45 s."""
    decision = decide(
        errors.RateLimitError("429", retry_after_s=45.0),
        1,
        now_s=NOW_S,
        max_countdown_s=600.0,
        rng=random.Random(0),
    )
    assert decision == Decision(Action.RETRY, 45.0, "retry 1 of 5")


def test_retry_after_above_max_countdown_is_clipped() -> None:
    """A Retry-After longer than max_countdown_s is clipped to max_countdown_s."""
    decision = decide(
        errors.RateLimitError("429", retry_after_s=3_600.0), 1, now_s=NOW_S, max_countdown_s=600.0
    )
    assert decision.action is Action.RETRY
    assert decision.countdown_s == 600.0


def test_retry_after_is_honoured_by_other_retryable_classes() -> None:
    """A server hint also stretches a DatabaseError retry (its policy honours Retry-After)."""
    decision = decide(
        errors.DatabaseError("busy", retry_after_s=20.0), 1, now_s=NOW_S, max_countdown_s=600.0
    )
    assert decision.action is Action.RETRY
    assert decision.countdown_s == 20.0


# --- deadline ----------------------------------------------------------------------------


def test_retry_landing_after_the_deadline_dead_letters() -> None:
    """A 30 s retry with 29.9 s left dead-letters; with exactly 30 s left it retries."""
    error = errors.RateLimitError("429", retry_after_s=30.0)
    late = decide(error, 1, now_s=NOW_S, max_countdown_s=600.0, deadline_s=NOW_S + 29.9)
    assert late.action is Action.DEAD_LETTER
    assert late.countdown_s == 0.0
    assert "deadline" in late.reason
    on_time = decide(error, 1, now_s=NOW_S, max_countdown_s=600.0, deadline_s=NOW_S + 30.0)
    assert on_time == Decision(Action.RETRY, 30.0, "retry 1 of 5")


@pytest.mark.parametrize("cls", RETRYABLE, ids=_name)
def test_deadline_already_passed_dead_letters_every_retry(
    cls: type[errors.AlchemiserError],
) -> None:
    """Once the deadline is behind us, no retryable error is scheduled again."""
    decision = decide(cls("late"), 1, now_s=NOW_S, max_countdown_s=600.0, deadline_s=NOW_S - 1.0)
    assert decision.action is Action.DEAD_LETTER
    assert "deadline" in decision.reason


# --- deferring ---------------------------------------------------------------------------


@given(
    gap_s=st.integers(min_value=0, max_value=1_000_000),
    max_countdown_s=st.integers(min_value=1, max_value=86_400),
    attempt=st.integers(min_value=1, max_value=1_000),
)
def test_market_closed_defers_until_next_open_in_hops(
    gap_s: int, max_countdown_s: int, attempt: int
) -> None:
    """MarketClosedError defers min(next_open - now, max_countdown_s), at any attempt."""
    next_open = datetime.fromtimestamp(NOW_S + gap_s, UTC)
    decision = decide(
        errors.MarketClosedError("closed", next_open=next_open),
        attempt,
        now_s=NOW_S,
        max_countdown_s=float(max_countdown_s),
    )
    assert decision == Decision(Action.DEFER, float(min(gap_s, max_countdown_s)), "deferred")


def test_market_closed_known_values() -> None:
    """An hour before the open: defer 3600 s under a 2 h cap, 600 s under a 10 min cap."""
    error = errors.MarketClosedError("closed", next_open=NEXT_OPEN)
    assert decide(error, 1, now_s=NOW_S, max_countdown_s=7_200.0) == Decision(
        Action.DEFER, 3_600.0, "deferred"
    )
    assert decide(error, 1, now_s=NOW_S, max_countdown_s=600.0) == Decision(
        Action.DEFER, 600.0, "deferred"
    )


def test_market_closed_next_open_wins_over_retry_after() -> None:
    """With both a next_open and a Retry-After, the market's open time decides the wait."""
    error = errors.MarketClosedError("closed", next_open=NEXT_OPEN, retry_after_s=5.0)
    assert decide(error, 1, now_s=NOW_S, max_countdown_s=7_200.0).countdown_s == 3_600.0


def test_market_closed_with_next_open_in_the_past_runs_again_at_once() -> None:
    """A next_open already passed defers with countdown 0 (never negative)."""
    error = errors.MarketClosedError("closed", next_open=NEXT_OPEN - timedelta(hours=2))
    assert decide(error, 1, now_s=NOW_S, max_countdown_s=600.0) == Decision(
        Action.DEFER, 0.0, "deferred"
    )


def test_market_closed_dead_letters_when_next_open_is_after_the_deadline() -> None:
    """An order valid until before the open dead-letters; one valid until the open defers."""
    error = errors.MarketClosedError("closed", next_open=NEXT_OPEN)
    open_s = NEXT_OPEN.timestamp()
    late = decide(error, 1, now_s=NOW_S, max_countdown_s=600.0, deadline_s=open_s - 1.0)
    assert late == Decision(Action.DEAD_LETTER, 0.0, "deadline passes before it may run again")
    on_time = decide(error, 1, now_s=NOW_S, max_countdown_s=600.0, deadline_s=open_s)
    assert on_time == Decision(Action.DEFER, 600.0, "deferred")


def test_market_closed_deadline_uses_the_whole_wait_not_the_hop() -> None:
    """The deadline check uses next_open, even though the hop itself would land in time."""
    error = errors.MarketClosedError("closed", next_open=NEXT_OPEN)
    decision = decide(error, 1, now_s=NOW_S, max_countdown_s=60.0, deadline_s=NOW_S + 120.0)
    assert decision.action is Action.DEAD_LETTER


def test_open_breaker_defers_for_its_retry_after() -> None:
    """CircuitBreakerOpenError defers its retry_after_s, clipped to max_countdown_s."""
    error = errors.CircuitBreakerOpenError("broker open", retry_after_s=12.5)
    assert decide(error, 1, now_s=NOW_S, max_countdown_s=600.0) == Decision(
        Action.DEFER, 12.5, "deferred"
    )
    assert decide(error, 99, now_s=NOW_S, max_countdown_s=10.0) == Decision(
        Action.DEFER, 10.0, "deferred"
    )
    long_error = errors.CircuitBreakerOpenError("broker open", retry_after_s=5_000.0)
    assert decide(long_error, 1, now_s=NOW_S, max_countdown_s=600.0).countdown_s == 600.0


def test_open_breaker_dead_letters_when_it_reopens_after_the_deadline() -> None:
    """A breaker that may close only after the deadline dead-letters the task."""
    error = errors.CircuitBreakerOpenError("broker open", retry_after_s=30.0)
    late = decide(error, 1, now_s=NOW_S, max_countdown_s=600.0, deadline_s=NOW_S + 29.0)
    assert late.action is Action.DEAD_LETTER
    on_time = decide(error, 1, now_s=NOW_S, max_countdown_s=600.0, deadline_s=NOW_S + 30.0)
    assert on_time == Decision(Action.DEFER, 30.0, "deferred")


@pytest.mark.parametrize(
    "error",
    [errors.MarketClosedError("closed"), errors.CircuitBreakerOpenError("open")],
    ids=lambda e: type(e).__name__,
)
def test_defer_without_a_hint_never_busy_loops(error: errors.AlchemiserError) -> None:
    """A defer with no wait hint either waits a positive time or dead-letters."""
    decision = decide(error, 1, now_s=NOW_S, max_countdown_s=600.0)
    assert decision.action is Action.DEAD_LETTER or decision.countdown_s > 0.0


def test_decision_is_frozen() -> None:
    """A Decision cannot be altered after decide returns it."""
    decision = decide(errors.ValidationError("bad"), 1, now_s=NOW_S, max_countdown_s=600.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.countdown_s = 5.0  # type: ignore[misc]


class MaintenanceWindowError(errors.AlchemiserError):
    """Another domain's deferral: the service is down until its window ends."""

    policy = errors.RetryPolicy(retryable=False, defer=True)

    def __init__(self, message: str, *, ends_at_s: float) -> None:
        super().__init__(message)
        self.ends_at_s = ends_at_s

    def wait_s(self, now_s: float) -> float | None:
        return self.ends_at_s - now_s


def test_a_deferral_waits_as_long_as_its_error_says() -> None:
    """The resolver asks the error how long to wait (``wait_s``), whatever its domain: no
    class is special-cased; a wait past ``max_countdown_s`` is taken in hops."""
    error = MaintenanceWindowError("down for maintenance", ends_at_s=1_000.0 + 420.0)
    decision = decide(error, 1, now_s=1_000.0, max_countdown_s=3_600.0)
    assert (decision.action, decision.countdown_s) == (Action.DEFER, 420.0)
    hop = decide(error, 1, now_s=1_000.0, max_countdown_s=300.0)
    assert (hop.action, hop.countdown_s) == (Action.DEFER, 300.0)
    late = decide(error, 1, now_s=2_000.0, max_countdown_s=3_600.0)
    assert late.countdown_s == 0.0
