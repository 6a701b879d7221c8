"""Pattern detection on a planted four-week history: what it finds, what it invents, and the
prediction's calibration on held-out days."""

from __future__ import annotations

import pytest

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
    """Trained on three weeks, the expected counts of MarketDataError per hour of the fourth
    week are within 15 % of what happened at the opens and within 10 % over the week; the
    probability follows the hours (near 1 at the open, low at night)."""
    events = history(days=28, seed=21)
    split_s = START_S + 21 * DAY_S
    held_out = [e for e in events if e.at_s >= split_s and e.error_type == "MarketDataError"]

    def expected(hour_start_s: float, minutes: float = 60) -> float:
        return predict_error_probability(
            events, "MarketDataError", minutes, now_s=hour_start_s, history_end_s=split_s
        ).expected_count

    week_expected = open_expected = open_observed = 0.0
    for hour in range(7 * 24):
        hour_start_s = split_s + hour * 3600
        predicted = expected(hour_start_s)
        week_expected += predicted
        if hour % 24 == 14 and hour // 24 < 5:  # the weekdays' 14:00 UTC hour (the open)
            open_expected += predicted
            open_observed += sum(
                1 for e in held_out if hour_start_s <= e.at_s < hour_start_s + 3600
            )
    assert abs(week_expected - len(held_out)) <= 0.10 * len(held_out)
    assert abs(open_expected - open_observed) <= 0.15 * open_observed

    def chance(offset_s: float) -> float:
        prediction = predict_error_probability(
            events, "MarketDataError", 30, now_s=split_s + offset_s, history_end_s=split_s
        )
        assert prediction.basis == "hour_of_week"
        return prediction.probability

    assert chance(14.5 * 3600) > 0.99
    assert chance(3 * 3600) < 0.3
