"""Pattern detection on a planted four-week history: what it finds, what it invents, and the
prediction's calibration on held-out days."""

from __future__ import annotations

import pytest

from bench.patterns import calibration
from resilience.patterns.analysis import Pattern, PatternConfig, detect_patterns
from resilience.patterns.prediction import predict_error_probability
from tests.resilience.patterns.synthetic_history import (
    DAY_S,
    NOISE_TYPES,
    PLANTED,
    START_S,
    event,
    history,
)


def matches(pattern: Pattern) -> bool:
    return any(
        p.kind == pattern.kind and set(p.error_types) == set(pattern.error_types) for p in PLANTED
    )


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_the_planted_patterns_are_found_and_little_else(seed: int) -> None:
    found = detect_patterns(history(seed=seed))
    recalled = [p for p in PLANTED if any(
        f.kind == p.kind and set(f.error_types) == set(p.error_types) for f in found
    )]  # fmt: skip
    spurious = [f for f in found if not matches(f)]
    assert len(recalled) / len(PLANTED) >= 0.8, [f.description for f in found]
    assert len(spurious) <= len(found) / 10, [f.description for f in spurious]


def test_each_kind_reports_what_it_saw() -> None:
    found = {p.kind: p for p in detect_patterns(history())}
    template = found["template"]
    assert template.count == 1_000 and template.details["variants"] == 1_000
    assert template.details["template"] == "insufficient buying power for order <id>"
    cluster = found["time_of_day"]
    assert cluster.details["hours_utc"] == [14]
    assert cluster.description.startswith("MarketDataError clusters at 14:00-15:00 UTC")
    sequence = found["sequence"]
    assert sequence.error_types == ("WebSocketError", "DataProviderError")
    assert sequence.details["confidence"] >= 0.95 and sequence.details["lift"] >= 3
    assert found["correlation"].score >= 0.6


def test_a_steady_background_has_no_pattern() -> None:
    noise = [e for e in history() if e.error_type in NOISE_TYPES]
    assert detect_patterns(noise) == []


def test_a_rare_error_type_is_not_analysed() -> None:
    few = [event(START_S + i * 60, "WebSocketError", f"x {i}", "x <n>") for i in range(5)]
    assert detect_patterns(few, PatternConfig(min_events=20)) == []


def test_prediction_is_calibrated_on_held_out_days() -> None:
    """Trained on three weeks, the expected count of MarketDataError in the fourth week (and in
    its five market opens) against what happened, over six seeds: within 10 % on average and
    20 % at worst (sampling noise of three weeks of training); the probability follows the
    hours (near 1 at the open, low at night)."""
    week_errors, open_errors = [], []
    for seed in range(21, 27):
        row = calibration(seed)
        week_errors.append(abs(row["week_expected"] - row["week_observed"]) / row["week_observed"])
        open_errors.append(
            abs(row["opens_expected"] - row["opens_observed"]) / row["opens_observed"]
        )
    for errors in (week_errors, open_errors):
        assert sum(errors) / len(errors) <= 0.10, errors
        assert max(errors) <= 0.20, errors

    events = history(days=28, seed=21)
    split_s = START_S + 21 * DAY_S

    def chance(offset_s: float) -> float:
        prediction = predict_error_probability(
            events, "MarketDataError", 30, now_s=split_s + offset_s, history_end_s=split_s
        )
        assert prediction.basis == "hour_of_week"
        return prediction.probability

    assert chance(14.5 * 3600) > 0.99
    assert chance(3 * 3600) < 0.3
