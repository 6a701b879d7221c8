"""The one place that turns (error, attempt) into retry, defer or dead-letter."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from resilience.errors import AlchemiserError
from resilience.policy.backoff import RandomSource, compute_countdown

__all__ = ["Action", "Decision", "decide"]


class Action(enum.Enum):
    """What happens to a failed task."""

    RETRY = "retry"  # run again after countdown_s; spends an attempt
    DEFER = "defer"  # run again after countdown_s; spends nothing ("not now", not "failed")
    DEAD_LETTER = "dead_letter"  # stop; write the dead letter and escalate


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`decide`; ``countdown_s`` is 0 for dead letters."""

    action: Action
    countdown_s: float
    reason: str


# A deferral without a hint of how long to wait still waits, so it cannot spin.
DEFAULT_DEFER_S = 5.0


def _wait_for(error: AlchemiserError, now_s: float) -> float:
    wait_s = error.wait_s(now_s)  # the error's own hint (a market's next open, a Retry-After)
    if wait_s is None:
        return DEFAULT_DEFER_S
    return max(wait_s, 0.0)


def decide(
    error: AlchemiserError,
    attempt: int,
    *,
    now_s: float,
    max_countdown_s: float,
    deadline_s: float | None = None,
    rng: RandomSource | None = None,
) -> Decision:
    """Decide what follows failed attempt number ``attempt`` (1 = the first run failed).

    Every countdown is at most ``max_countdown_s`` (kept below the broker's visibility
    timeout, so a waiting message is never redelivered); a longer wait is taken in hops.
    Nothing is scheduled to run after ``deadline_s``.
    """
    policy = error.policy
    if policy.defer:
        wait_s = _wait_for(error, now_s)
        if deadline_s is not None and now_s + wait_s > deadline_s:
            return Decision(Action.DEAD_LETTER, 0.0, "deadline passes before it may run again")
        return Decision(Action.DEFER, min(wait_s, max_countdown_s), "deferred")
    if not policy.retryable:
        return Decision(Action.DEAD_LETTER, 0.0, "not retryable")
    if attempt >= policy.max_attempts:
        return Decision(
            Action.DEAD_LETTER, 0.0, f"attempts exhausted ({attempt} of {policy.max_attempts})"
        )
    countdown_s = compute_countdown(
        policy.backoff, attempt, jitter=policy.jitter, cap_s=policy.cap_s, rng=rng
    )
    if policy.honour_retry_after and error.retry_after_s is not None:
        countdown_s = max(countdown_s, error.retry_after_s)
    countdown_s = min(countdown_s, max_countdown_s)
    if deadline_s is not None and now_s + countdown_s > deadline_s:
        return Decision(Action.DEAD_LETTER, 0.0, "deadline passes before the next attempt")
    return Decision(Action.RETRY, countdown_s, f"retry {attempt} of {policy.max_attempts - 1}")
