"""Pure tests of the backoff strategies, jitter and countdown in ``resilience.policy.backoff``."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilience.policy.backoff import (
    BackoffStrategy,
    Decorrelated,
    Exponential,
    Fibonacci,
    Fixed,
    Jitter,
    Linear,
    apply_jitter,
    compute_countdown,
)

# Huge attempts (past where fib(n) or factor**n overflow a float) have their own test below.
MAX_SAFE_ATTEMPT = 1_400

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
DELAYS_S = st.floats(min_value=0.0, max_value=1_000.0, allow_nan=False, allow_infinity=False)
FACTORS = st.floats(min_value=1.0, max_value=10.0, allow_nan=False, allow_infinity=False)
ATTEMPTS = st.integers(min_value=1, max_value=MAX_SAFE_ATTEMPT)
CAPS_S = st.floats(min_value=0.0, max_value=86_400.0, allow_nan=False, allow_infinity=False)
JITTERS = st.sampled_from(Jitter)

STRATEGIES: st.SearchStrategy[BackoffStrategy] = st.one_of(
    st.builds(Fixed, delay_s=DELAYS_S),
    st.builds(Linear, initial_s=DELAYS_S, step_s=DELAYS_S),
    st.builds(Exponential, base_s=DELAYS_S, factor=FACTORS),
    st.builds(Fibonacci, base_s=DELAYS_S),
    st.builds(Decorrelated, base_s=DELAYS_S),
)

ALL_DEFAULT_STRATEGIES: list[BackoffStrategy] = [
    Fixed(),
    Linear(),
    Exponential(),
    Fibonacci(),
    Decorrelated(),
]


def _decorrelated_upper_s(base_s: float, attempt: int) -> float:
    """The upper bound ``base * 3 ** (attempt - 1)`` of Decorrelated, saturating at inf."""
    try:
        return base_s * 3.0 ** (attempt - 1)
    except OverflowError:
        return math.inf


def _non_decreasing(values: list[float]) -> bool:
    return all(a <= b for a, b in itertools.pairwise(values))


# --- monotone in attempt (before jitter) -------------------------------------------------


@given(delay_s=DELAYS_S, start=ATTEMPTS)
def test_fixed_returns_the_same_delay_for_every_attempt(delay_s: float, start: int) -> None:
    """Fixed(d) is d for every attempt, hence trivially non-decreasing."""
    strategy = Fixed(delay_s=delay_s)
    rng = random.Random(0)
    assert [strategy(n, rng) for n in range(start, start + 20)] == [delay_s] * 20


@given(initial_s=DELAYS_S, step_s=DELAYS_S, start=ATTEMPTS)
def test_linear_is_non_decreasing_and_follows_its_formula(
    initial_s: float, step_s: float, start: int
) -> None:
    """Linear is initial + step * (attempt - 1), non-decreasing for a non-negative step."""
    strategy = Linear(initial_s=initial_s, step_s=step_s)
    rng = random.Random(0)
    values = [strategy(n, rng) for n in range(start, start + 20)]
    assert _non_decreasing(values)
    assert values[0] == initial_s + step_s * (start - 1)


@given(base_s=DELAYS_S, factor=FACTORS, start=st.integers(min_value=1, max_value=2_000))
def test_exponential_is_non_decreasing_including_past_overflow(
    base_s: float, factor: float, start: int
) -> None:
    """Exponential with factor >= 1 never shrinks as attempts grow, even across overflow."""
    strategy = Exponential(base_s=base_s, factor=factor)
    rng = random.Random(0)
    values = [strategy(n, rng) for n in range(start, start + 20)]
    assert _non_decreasing(values)
    assert all(v >= 0.0 for v in values)


@given(base_s=DELAYS_S, start=st.integers(min_value=1, max_value=MAX_SAFE_ATTEMPT - 20))
def test_fibonacci_is_non_decreasing(base_s: float, start: int) -> None:
    """Fibonacci never shrinks as attempts grow."""
    strategy = Fibonacci(base_s=base_s)
    rng = random.Random(0)
    values = [strategy(n, rng) for n in range(start, start + 20)]
    assert _non_decreasing(values)
    assert all(v >= 0.0 for v in values)


@given(base_s=DELAYS_S, attempt=st.integers(min_value=1, max_value=600), seed=SEEDS)
def test_decorrelated_stays_within_its_monotone_upper_bound(
    base_s: float, attempt: int, seed: int
) -> None:
    """Decorrelated is in [base, base * 3 ** (attempt - 1)] and that bound never shrinks."""
    strategy = Decorrelated(base_s=base_s)
    value = strategy(attempt, random.Random(seed))
    upper_s = _decorrelated_upper_s(base_s, attempt)
    assert base_s <= value <= upper_s
    assert upper_s <= _decorrelated_upper_s(base_s, attempt + 1)


@given(base_s=DELAYS_S, seed=SEEDS)
def test_decorrelated_first_attempt_is_exactly_the_base(base_s: float, seed: int) -> None:
    """Decorrelated's first retry waits exactly base_s, without drawing randomness."""
    rng = random.Random(seed)
    assert Decorrelated(base_s=base_s)(1, rng) == base_s
    assert rng.random() == random.Random(seed).random()


# --- countdown bounds --------------------------------------------------------------------


@given(strategy=STRATEGIES, attempt=ATTEMPTS, jitter=JITTERS, cap_s=CAPS_S, seed=SEEDS)
def test_compute_countdown_is_within_zero_and_cap(
    strategy: BackoffStrategy, attempt: int, jitter: Jitter, cap_s: float, seed: int
) -> None:
    """Every strategy, jitter mode and attempt yields a countdown in [0, cap_s]."""
    countdown_s = compute_countdown(
        strategy, attempt, jitter=jitter, cap_s=cap_s, rng=random.Random(seed)
    )
    assert 0.0 <= countdown_s <= cap_s


@pytest.mark.parametrize(
    "strategy",
    [
        Linear(),
        Exponential(),
        Exponential(base_s=0.5, factor=1.5),
        Decorrelated(),
        Decorrelated(base_s=0.25),
        Fibonacci(),
    ],
    ids=repr,
)
@pytest.mark.parametrize("attempt", [1_500, 10_000, 1_000_000])
def test_huge_attempts_saturate_at_the_cap(strategy: BackoffStrategy, attempt: int) -> None:
    """A growing strategy at a huge attempt saturates to cap_s (no OverflowError)."""
    assert compute_countdown(strategy, attempt, jitter=Jitter.NONE, cap_s=60.0) == 60.0
    for jitter in (Jitter.FULL, Jitter.EQUAL):
        countdown_s = compute_countdown(
            strategy, attempt, jitter=jitter, cap_s=60.0, rng=random.Random(attempt)
        )
        assert 0.0 <= countdown_s <= 60.0
    assert compute_countdown(Fixed(delay_s=2.0), attempt, jitter=Jitter.NONE, cap_s=60.0) == 2.0


@pytest.mark.parametrize(
    "strategy",
    [Exponential(base_s=0.0), Decorrelated(base_s=0.0)],
    ids=repr,
)
def test_zero_base_stays_zero_at_huge_attempts(strategy: BackoffStrategy) -> None:
    """A strategy whose base is 0 waits 0 at every attempt, however large."""
    rng = random.Random(0)
    assert strategy(10, rng) == 0.0
    assert strategy(10_000, rng) == 0.0


# --- jitter bounds -----------------------------------------------------------------------


@given(strategy=STRATEGIES, attempt=ATTEMPTS, cap_s=CAPS_S, seed=SEEDS)
def test_no_jitter_returns_exactly_the_capped_delay(
    strategy: BackoffStrategy, attempt: int, cap_s: float, seed: int
) -> None:
    """Jitter.NONE returns exactly min(raw, cap_s)."""
    raw_s = strategy(attempt, random.Random(seed))
    countdown_s = compute_countdown(
        strategy, attempt, jitter=Jitter.NONE, cap_s=cap_s, rng=random.Random(seed)
    )
    assert countdown_s == min(raw_s, cap_s)


@given(strategy=STRATEGIES, attempt=ATTEMPTS, cap_s=CAPS_S, seed=SEEDS)
def test_full_jitter_is_within_zero_and_the_capped_delay(
    strategy: BackoffStrategy, attempt: int, cap_s: float, seed: int
) -> None:
    """Jitter.FULL lands in [0, min(raw, cap_s)]."""
    capped_s = min(strategy(attempt, random.Random(seed)), cap_s)
    countdown_s = compute_countdown(
        strategy, attempt, jitter=Jitter.FULL, cap_s=cap_s, rng=random.Random(seed)
    )
    assert 0.0 <= countdown_s <= capped_s


@given(strategy=STRATEGIES, attempt=ATTEMPTS, cap_s=CAPS_S, seed=SEEDS)
def test_equal_jitter_is_within_half_and_the_whole_capped_delay(
    strategy: BackoffStrategy, attempt: int, cap_s: float, seed: int
) -> None:
    """Jitter.EQUAL lands in [capped / 2, capped] where capped = min(raw, cap_s)."""
    capped_s = min(strategy(attempt, random.Random(seed)), cap_s)
    countdown_s = compute_countdown(
        strategy, attempt, jitter=Jitter.EQUAL, cap_s=cap_s, rng=random.Random(seed)
    )
    assert capped_s / 2.0 <= countdown_s <= capped_s


@given(delay_s=DELAYS_S, seed=SEEDS)
def test_apply_jitter_uses_one_uniform_draw_per_mode(delay_s: float, seed: int) -> None:
    """apply_jitter: NONE is d, FULL is r * d, EQUAL is d/2 + r * d/2 with r the next draw."""
    r = random.Random(seed).random()
    assert apply_jitter(delay_s, Jitter.NONE, random.Random(seed)) == delay_s
    assert apply_jitter(delay_s, Jitter.FULL, random.Random(seed)) == r * delay_s
    assert apply_jitter(delay_s, Jitter.EQUAL, random.Random(seed)) == (
        delay_s / 2.0 + r * (delay_s / 2.0)
    )


def test_apply_jitter_known_values_for_seed_zero() -> None:
    """With Random(0) (first draw 0.8444218515250481) jitter of 8 s gives known figures."""
    r = 0.8444218515250481
    assert random.Random(0).random() == r
    assert apply_jitter(8.0, Jitter.NONE, random.Random(0)) == 8.0
    assert apply_jitter(8.0, Jitter.FULL, random.Random(0)) == pytest.approx(6.755374812200385)
    assert apply_jitter(8.0, Jitter.EQUAL, random.Random(0)) == pytest.approx(7.377687406100192)


# --- invalid input -----------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ALL_DEFAULT_STRATEGIES, ids=repr)
@given(attempt=st.integers(max_value=0))
def test_attempt_below_one_raises_value_error(strategy: BackoffStrategy, attempt: int) -> None:
    """Every strategy, and compute_countdown, rejects attempt < 1 with ValueError."""
    with pytest.raises(ValueError, match="attempt must be >= 1"):
        strategy(attempt, random.Random(0))
    with pytest.raises(ValueError, match="attempt must be >= 1"):
        compute_countdown(strategy, attempt, jitter=Jitter.NONE, cap_s=10.0)


@pytest.mark.parametrize("cap_s", [-0.001, -1.0, -1e9])
def test_negative_cap_raises_value_error(cap_s: float) -> None:
    """compute_countdown refuses a negative cap_s."""
    with pytest.raises(ValueError, match="cap_s must be >= 0"):
        compute_countdown(Fixed(), 1, jitter=Jitter.NONE, cap_s=cap_s)


def test_zero_cap_always_gives_zero() -> None:
    """cap_s = 0 forces a countdown of exactly 0 whatever the strategy and jitter."""
    for strategy in ALL_DEFAULT_STRATEGIES:
        for jitter in Jitter:
            assert compute_countdown(strategy, 5, jitter=jitter, cap_s=0.0) == 0.0


# --- exact known points ------------------------------------------------------------------


def test_fibonacci_known_values() -> None:
    """Fibonacci(1) gives 1, 2, 3, 5, 8, 13, 21, 34 for attempts 1..8."""
    rng = random.Random(0)
    assert [Fibonacci()(n, rng) for n in range(1, 9)] == [1, 2, 3, 5, 8, 13, 21, 34]
    assert [Fibonacci(base_s=0.5)(n, rng) for n in range(1, 6)] == [0.5, 1.0, 1.5, 2.5, 4.0]


def test_exponential_known_values() -> None:
    """Exponential(base 0.5, factor 2) gives 0.5, 1, 2, 4, 8 for attempts 1..5."""
    rng = random.Random(0)
    strategy = Exponential(base_s=0.5, factor=2.0)
    assert [strategy(n, rng) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert [Exponential()(n, rng) for n in range(1, 5)] == [1.0, 2.0, 4.0, 8.0]


def test_linear_and_fixed_known_values() -> None:
    """Linear(1, 2) gives 1, 3, 5, 7; Fixed(2.5) gives 2.5 every time."""
    rng = random.Random(0)
    assert [Linear(initial_s=1.0, step_s=2.0)(n, rng) for n in range(1, 5)] == [1, 3, 5, 7]
    assert [Fixed(delay_s=2.5)(n, rng) for n in (1, 2, 100)] == [2.5, 2.5, 2.5]


def test_decorrelated_known_values() -> None:
    """Decorrelated(2) is 2 at attempt 1 and Random(42).uniform(2, 18) at attempt 3."""
    assert Decorrelated(base_s=2.0)(1, random.Random(42)) == 2.0
    expected = random.Random(42).uniform(2.0, 18.0)
    assert Decorrelated(base_s=2.0)(3, random.Random(42)) == expected
    assert 2.0 <= expected <= 18.0


def test_compute_countdown_caps_before_jitter_known_values() -> None:
    """Exponential(0.5, 2) at attempt 4 is 4 s: capped to 3 at cap 3; EQUAL is in [1.5, 3]."""
    strategy = Exponential(base_s=0.5, factor=2.0)
    assert compute_countdown(strategy, 4, jitter=Jitter.NONE, cap_s=10.0) == 4.0
    assert compute_countdown(strategy, 4, jitter=Jitter.NONE, cap_s=3.0) == 3.0
    r = random.Random(5).random()
    assert (
        compute_countdown(strategy, 4, jitter=Jitter.FULL, cap_s=3.0, rng=random.Random(5))
        == r * 3.0
    )
    assert (
        compute_countdown(strategy, 4, jitter=Jitter.EQUAL, cap_s=3.0, rng=random.Random(5))
        == 1.5 + r * 1.5
    )


# --- reproducibility and shape -----------------------------------------------------------


@given(strategy=STRATEGIES, attempt=ATTEMPTS, jitter=JITTERS, cap_s=CAPS_S, seed=SEEDS)
def test_injected_rng_makes_countdowns_reproducible(
    strategy: BackoffStrategy, attempt: int, jitter: Jitter, cap_s: float, seed: int
) -> None:
    """Two generators seeded alike give identical countdowns."""
    first = compute_countdown(
        strategy, attempt, jitter=jitter, cap_s=cap_s, rng=random.Random(seed)
    )
    second = compute_countdown(
        strategy, attempt, jitter=jitter, cap_s=cap_s, rng=random.Random(seed)
    )
    assert first == second


def test_different_seeds_spread_countdowns() -> None:
    """Full jitter with different seeds gives different countdowns (the point of jitter)."""
    countdowns = {
        compute_countdown(Exponential(), 5, jitter=Jitter.FULL, cap_s=60.0, rng=random.Random(s))
        for s in range(20)
    }
    assert len(countdowns) == 20
    assert all(0.0 <= c <= 16.0 for c in countdowns)


def test_default_rng_is_used_when_none_is_injected() -> None:
    """Without an rng, compute_countdown still jitters within bounds."""
    for _ in range(50):
        countdown_s = compute_countdown(Exponential(), 3, jitter=Jitter.EQUAL, cap_s=60.0)
        assert 2.0 <= countdown_s <= 4.0


@pytest.mark.parametrize("strategy", ALL_DEFAULT_STRATEGIES, ids=repr)
def test_strategies_are_frozen_backoff_strategies(strategy: BackoffStrategy) -> None:
    """Each strategy satisfies the BackoffStrategy protocol and cannot be mutated."""
    assert isinstance(strategy, BackoffStrategy)
    field_name = dataclasses.fields(strategy)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(strategy, field_name, 99.0)
