"""The probability of an error type in the next minutes, from its historical rate with
seasonality: per hour of the week once the history covers two weeks, per hour of the day once it
covers three days, else its overall rate. Errors are taken as a Poisson process within each
hour, so P(at least one in the window) = 1 - exp(-expected count)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from resilience.patterns.history import ErrorEvent

__all__ = ["Prediction", "predict_error_probability"]

HOUR_S = 3600
DAY_S = 24 * HOUR_S
WEEK_S = 7 * DAY_S

Basis = Literal["hour_of_week", "hour_of_day", "overall", "no_history"]


@dataclass(frozen=True, slots=True)
class Prediction:
    """How likely ``error_type`` is in the next ``window_minutes``, and on what it rests."""

    error_type: str
    window_minutes: float
    expected_count: float
    probability: float
    basis: Basis
    history_days: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def predict_error_probability(
    events: Sequence[ErrorEvent],
    error_type: str,
    window_minutes: float,
    *,
    now_s: float,
    history_end_s: float | None = None,
) -> Prediction:
    """The chance of at least one ``error_type`` in ``[now_s, now_s + window_minutes)``, from
    ``events``: the history, observed from its first event to ``history_end_s`` (default
    ``now_s``; earlier to predict a later window, as a test on held-out days does)."""
    if not window_minutes > 0:
        raise ValueError(f"window_minutes must be positive, got {window_minutes}")
    history_end_s = now_s if history_end_s is None else min(history_end_s, now_s)
    past = [e for e in events if e.at_s < history_end_s]
    start_s = min((e.at_s for e in past), default=history_end_s)
    span_s = history_end_s - start_s
    times = [e.at_s for e in past if e.error_type == error_type]
    end_s = now_s + window_minutes * 60
    if span_s <= 0:
        return Prediction(error_type, window_minutes, 0.0, 0.0, "no_history", 0.0)
    basis: Basis
    if span_s >= 2 * WEEK_S:
        basis, period_s = "hour_of_week", WEEK_S
    elif span_s >= 3 * DAY_S:
        basis, period_s = "hour_of_day", DAY_S
    else:
        basis, period_s = "overall", 0
    if period_s == 0:
        expected = len(times) / span_s * (end_s - now_s)
    else:
        expected = _seasonal_expected(
            times, observed=(start_s, history_end_s), window=(now_s, end_s), period_s=period_s
        )
    return Prediction(
        error_type=error_type,
        window_minutes=window_minutes,
        expected_count=expected,
        probability=1.0 - math.exp(-expected),
        basis=basis,
        history_days=span_s / DAY_S,
    )


def _seasonal_expected(
    times: Sequence[float],
    *,
    observed: tuple[float, float],
    window: tuple[float, float],
    period_s: int,
) -> float:
    """The window's expected count: each hour's rate (its errors over the seconds of that hour
    of the period the history observed) times the window's seconds in it."""

    def slot(t: float) -> int:
        return int(t % period_s // HOUR_S)

    counts = Counter(slot(t) for t in times)
    seen: dict[int, float] = {}
    t, until = observed
    while t < until:
        next_hour = (t // HOUR_S + 1) * HOUR_S
        seen[slot(t)] = seen.get(slot(t), 0.0) + min(next_hour, until) - t
        t = next_hour
    expected = 0.0
    t, end_s = window
    while t < end_s:
        next_hour = (t // HOUR_S + 1) * HOUR_S
        seconds = seen.get(slot(t), 0.0)
        if seconds > 0:
            expected += counts.get(slot(t), 0) / seconds * (min(next_hour, end_s) - t)
        t = next_hour
    return expected
