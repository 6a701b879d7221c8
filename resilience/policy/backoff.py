"""Backoff strategies: small pure callables ``(attempt) -> seconds`` that compose.

``attempt`` counts failed attempts so far, starting at 1 for the first retry. Strategies are
frozen dataclasses; randomness (jitter, decorrelated) comes from an injected ``Random`` so
they are tested as pure functions.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "BackoffStrategy",
    "Decorrelated",
    "Exponential",
    "Fibonacci",
    "Fixed",
    "Jitter",
    "Linear",
    "RandomSource",
    "apply_jitter",
    "compute_countdown",
]


# fib(1475) is the last Fibonacci number a float holds.
FIBONACCI_FLOAT_LIMIT = 1470


class RandomSource(Protocol):
    """What jitter needs of a random generator (``random.Random`` satisfies it)."""

    def random(self) -> float: ...

    def uniform(self, a: float, b: float) -> float: ...


@runtime_checkable
class BackoffStrategy(Protocol):
    """The delay before retry number ``attempt`` (1-based), before jitter and cap."""

    def __call__(self, attempt: int, rng: RandomSource) -> float: ...


class Jitter(enum.Enum):
    """How randomness spreads retries of many workers apart (AWS architecture blog names)."""

    NONE = "none"
    FULL = "full"  # uniform in [0, d]
    EQUAL = "equal"  # d/2 + uniform in [0, d/2]


def _check_attempt(attempt: int) -> None:
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")


@dataclass(frozen=True, slots=True)
class Fixed:
    """The same delay every time."""

    delay_s: float = 1.0

    def __call__(self, attempt: int, rng: RandomSource) -> float:
        _check_attempt(attempt)
        return self.delay_s


@dataclass(frozen=True, slots=True)
class Linear:
    """``initial_s + step_s * (attempt - 1)``."""

    initial_s: float = 1.0
    step_s: float = 1.0

    def __call__(self, attempt: int, rng: RandomSource) -> float:
        _check_attempt(attempt)
        return self.initial_s + self.step_s * (attempt - 1)


@dataclass(frozen=True, slots=True)
class Exponential:
    """``base_s * factor ** (attempt - 1)``; overflow saturates to infinity (then capped)."""

    base_s: float = 1.0
    factor: float = 2.0

    def __call__(self, attempt: int, rng: RandomSource) -> float:
        _check_attempt(attempt)
        if self.base_s == 0:
            return 0.0
        try:
            return self.base_s * self.factor ** (attempt - 1)
        except OverflowError:
            return math.inf


@dataclass(frozen=True, slots=True)
class Fibonacci:
    """``base_s * fib(attempt)`` with fib(1) = 1, fib(2) = 2, fib(3) = 3, fib(4) = 5, ..."""

    base_s: float = 1.0

    def __call__(self, attempt: int, rng: RandomSource) -> float:
        _check_attempt(attempt)
        if self.base_s == 0:
            return 0.0
        if attempt > FIBONACCI_FLOAT_LIMIT:
            return math.inf  # fib(n) no longer fits a float: saturate, the cap applies
        previous, current = 1, 1
        for _ in range(attempt):
            previous, current = current, previous + current
        return self.base_s * previous


@dataclass(frozen=True, slots=True)
class Decorrelated:
    """AWS "decorrelated jitter": ``uniform(base, previous * 3)``, grown per attempt.

    The previous delay is re-derived from the attempt number with the upper bound of each step
    (``base * 3 ** (attempt - 1)``) so the strategy stays a pure function of ``attempt``; its
    own randomness is the jitter, so combine it with ``Jitter.NONE``.
    """

    base_s: float = 1.0

    def __call__(self, attempt: int, rng: RandomSource) -> float:
        _check_attempt(attempt)
        if attempt == 1 or self.base_s == 0:
            return self.base_s
        try:
            upper = self.base_s * 3.0 ** (attempt - 1)
        except OverflowError:
            upper = math.inf
        if math.isinf(upper):
            return math.inf
        return rng.uniform(self.base_s, upper)


def apply_jitter(delay_s: float, jitter: Jitter, rng: RandomSource) -> float:
    """Spread ``delay_s`` by the jitter mode; the result stays within ``[0, delay_s]``."""
    if jitter is Jitter.NONE:
        return delay_s
    if jitter is Jitter.FULL:
        return rng.random() * delay_s
    half = delay_s / 2.0
    return half + rng.random() * half


def compute_countdown(
    strategy: BackoffStrategy,
    attempt: int,
    *,
    jitter: Jitter,
    cap_s: float,
    rng: RandomSource | None = None,
) -> float:
    """The countdown before retry ``attempt``: strategy, then cap, then jitter; in [0, cap_s].

    Capping before jitter keeps full and equal jitter spreading over the whole capped range
    instead of collapsing every late retry onto the cap.
    """
    if cap_s < 0:
        raise ValueError(f"cap_s must be >= 0, got {cap_s}")
    source: RandomSource = rng if rng is not None else random.Random()
    raw = strategy(attempt, source)
    capped = min(max(raw, 0.0), cap_s)
    return min(max(apply_jitter(capped, jitter, source), 0.0), cap_s)
