"""Alert thresholds: static boundaries, dynamic learning, cool-down, escalation input, and the
false-positive rate of the dynamic thresholds on a synthetic labelled series."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.thresholds_fp import measure, synthesize
from resilience.errors import ConfigurationError
from resilience.notify.escalation_policy import DEFAULT_POLICY
from resilience.notify.model import Notification, group_key
from resilience.observability.thresholds import (
    ALERT_COMPONENT,
    ALERT_ERROR_TYPE,
    AlertEvaluator,
    AlertThresholds,
    DynamicThresholds,
    StaticThresholds,
    ThresholdAlert,
    ThresholdKind,
    check,
    error_rate_threshold,
    percentile,
    to_failure,
)
from resilience.policy.retry import ErrorSeverity

# Tuesday 2026-01-06 15:30 UTC: market hours, mid-hour (the judged window lies in 15:00).
NOW_S = 1_767_713_400.0
STEP_S = 300.0
STATIC = StaticThresholds()
DYNAMIC = DynamicThresholds()


@dataclass(frozen=True)
class Recovery:
    recovered: int = 0
    dead: int = 0


@dataclass
class FakeSource:
    """A ThresholdSource with fixed answers (history: 5-minute buckets, oldest first)."""

    rate_per_min: float = 0.0
    critical: int = 0
    history: list[tuple[float, int]] = field(default_factory=list)
    outcomes: Recovery = field(default_factory=Recovery)
    trips: int = 0

    def error_rate_per_min(self, window_s: float, key: str | None = None) -> float:
        return self.rate_per_min

    def critical_count(self, window_s: float) -> int:
        return self.critical

    def series(
        self, window_s: float, step_s: float = 60, key: str | None = None
    ) -> list[tuple[float, int]]:
        return list(self.history)

    def recovery(self) -> Recovery:
        return self.outcomes

    def breaker_trips(self, window_s: float) -> int:
        return self.trips


def history(counts: list[int], end_s: float = NOW_S - STEP_S) -> list[tuple[float, int]]:
    """Buckets of STEP_S with ``counts`` (oldest first), the last one ending at ``end_s``."""
    first_s = end_s - len(counts) * STEP_S
    return [(first_s + i * STEP_S, count) for i, count in enumerate(counts)]


def names(alerts: list[ThresholdAlert]) -> list[str]:
    return [alert.name for alert in alerts]


@pytest.mark.parametrize(("rate", "fires"), [(0.99, False), (1.0, True), (1.01, True)])
def test_static_error_rate_fires_at_one_per_minute_and_above(rate: float, fires: bool) -> None:
    """Without history the error rate fires at >= 1.0 errors/min, not below."""
    alerts = check(FakeSource(rate_per_min=rate), NOW_S, AlertThresholds())
    assert names(alerts) == (["error_rate"] if fires else [])
    if fires:
        assert alerts[0].kind is ThresholdKind.STATIC
        assert alerts[0].threshold == 1.0
        assert alerts[0].severity is ErrorSeverity.HIGH


@pytest.mark.parametrize(("count", "fires"), [(0, False), (1, True), (2, True)])
def test_one_critical_error_in_five_minutes_fires_critical(count: int, fires: bool) -> None:
    """A single critical error fires ``critical_errors`` with CRITICAL severity."""
    alerts = check(FakeSource(critical=count), NOW_S, AlertThresholds())
    assert names(alerts) == (["critical_errors"] if fires else [])
    assert all(alert.severity is ErrorSeverity.CRITICAL for alert in alerts)


@pytest.mark.parametrize(
    ("recovered", "dead", "fires"),
    [(6, 4, False), (5, 5, True), (4, 6, True), (0, 9, False), (0, 10, True)],
)
def test_recovery_failure_rate_fires_at_half_once_there_are_ten_outcomes(
    recovered: int, dead: int, fires: bool
) -> None:
    """Dead letters / (recovered + dead) >= 50% fires; fewer than 10 outcomes are not judged."""
    source = FakeSource(outcomes=Recovery(recovered=recovered, dead=dead))
    alerts = check(source, NOW_S, AlertThresholds())
    assert names(alerts) == (["recovery_failure_rate"] if fires else [])
    if fires:
        assert alerts[0].observed == dead / (recovered + dead)


@pytest.mark.parametrize(("trips", "fires"), [(2, False), (3, True), (4, True)])
def test_three_breaker_trips_in_ten_minutes_fire(trips: int, fires: bool) -> None:
    """Three breaker openings in the window fire ``breaker_trips``; two do not."""
    alerts = check(FakeSource(trips=trips), NOW_S, AlertThresholds())
    assert names(alerts) == (["breaker_trips"] if fires else [])


def test_every_threshold_fires_in_a_fixed_order() -> None:
    """All four breached at once give four alerts, critical first."""
    source = FakeSource(
        rate_per_min=5.0, critical=1, outcomes=Recovery(recovered=0, dead=10), trips=3
    )
    alerts = check(source, NOW_S, AlertThresholds())
    assert names(alerts) == [
        "critical_errors",
        "error_rate",
        "recovery_failure_rate",
        "breaker_trips",
    ]
    assert all(alert.at_s == NOW_S for alert in alerts)


def test_dynamic_threshold_needs_ten_samples_of_history() -> None:
    """With 9 buckets of history the static 1.0/min decides; with 10, their 95th percentile."""
    # Counts per 5 minutes of 10..90 and 100: per minute 2..18 and 20.
    nine = [10 * i for i in range(1, 10)]
    assert error_rate_threshold(history(nine), NOW_S, STATIC, DYNAMIC) == (
        1.0,
        ThresholdKind.STATIC,
    )
    ten = [*nine, 100]
    threshold, kind = error_rate_threshold(history(ten), NOW_S, STATIC, DYNAMIC)
    assert kind is ThresholdKind.DYNAMIC
    assert threshold == pytest.approx(percentile([c / 5 for c in ten], 95))
    assert threshold == pytest.approx(19.1)  # rank 8.55 between 18 and 20


def test_history_excludes_the_window_being_judged() -> None:
    """Buckets overlapping the last five minutes (an incident's own errors) are not history."""
    quiet = history([5] * 20)
    with_current = [*quiet, (NOW_S - STEP_S, 10_000), (NOW_S, 10_000)]
    assert error_rate_threshold(with_current, NOW_S, STATIC, DYNAMIC) == error_rate_threshold(
        quiet, NOW_S, STATIC, DYNAMIC
    )


def test_dynamic_threshold_never_drops_below_the_static_floor() -> None:
    """A quiet history (0.2/min) leaves the threshold at the static 1.0/min."""
    assert error_rate_threshold(history([1] * 50), NOW_S, STATIC, DYNAMIC) == (
        1.0,
        ThresholdKind.STATIC,
    )


def test_seasonal_baseline_is_twice_the_mean_of_this_utc_hour() -> None:
    """Each UTC hour is judged against its own mean, doubled: the busy hour's threshold is
    the busy hour's, two hours later the quiet hours' (both above the whole history's p95)."""
    day_s = 86_400.0
    hour_s = 3600.0
    buckets: list[tuple[float, int]] = []
    for day in range(1, 4):
        start_s = NOW_S - 1800.0 - day * day_s  # 15:00 UTC
        # This hour of day (15:00 UTC) averages 40 per 5 min (8/min), the rest 5 (1/min).
        buckets += [(start_s + i * STEP_S, 30 if i % 2 else 50) for i in range(12)]
        buckets += [(start_s + hour_s + i * STEP_S, 5) for i in range(12 * 20)]
    buckets.sort()
    at_hour, kind = error_rate_threshold(buckets, NOW_S, STATIC, DYNAMIC)
    assert kind is ThresholdKind.DYNAMIC
    assert at_hour == pytest.approx(2 * 8.0)
    assert percentile([c / 5 for _, c in buckets], 95) < at_hour
    two_hours_later, _ = error_rate_threshold(buckets, NOW_S + 2 * hour_s, STATIC, DYNAMIC)
    assert two_hours_later == pytest.approx(2 * 1.0)


def test_seasonal_baseline_waits_for_ten_samples_of_its_hour() -> None:
    """An hour seen in fewer than 10 buckets does not raise the threshold."""
    hour_s = 3600.0
    hour_start_s = NOW_S - 1800.0 - 86_400.0  # 15:00 UTC yesterday
    busy = [(hour_start_s + i * STEP_S, 100) for i in range(9)]
    quiet = [(hour_start_s + hour_s + i * STEP_S, 5) for i in range(200)]
    threshold, _ = error_rate_threshold([*busy, *quiet], NOW_S, STATIC, DYNAMIC)
    assert threshold == pytest.approx(percentile([c / 5 for _, c in [*busy, *quiet]], 95))
    assert threshold < 2 * 20.0


def test_window_just_after_the_hour_is_judged_by_the_hour_it_mostly_lies_in() -> None:
    """Two minutes past 16:00 the window holds three minutes of 15:xx: the 15:00 baseline."""
    hour_start_s = NOW_S - 1800.0 - 86_400.0  # 15:00 UTC yesterday
    busy = [(hour_start_s + i * STEP_S, 50) for i in range(12)]  # 10/min
    quiet = [(hour_start_s + 3600.0 + i * STEP_S, 5) for i in range(200)]  # 1/min
    buckets = [*busy, *quiet]
    at_16_02, _ = error_rate_threshold(buckets, NOW_S + 1800.0 + 120.0, STATIC, DYNAMIC)
    at_16_03, _ = error_rate_threshold(buckets, NOW_S + 1800.0 + 180.0, STATIC, DYNAMIC)
    assert at_16_02 == pytest.approx(2 * 10.0)
    assert at_16_03 < at_16_02


def test_evaluator_fires_once_per_incident_and_again_after_the_cool_down() -> None:
    """A breach held for 30 minutes fires once; a new one 15 minutes after the last breach
    fires again, one 14 minutes after does not."""
    evaluator = AlertEvaluator(AlertThresholds(cooldown_s=900.0))
    source = FakeSource(rate_per_min=3.0)
    fired = [evaluator.evaluate(source, NOW_S + minute * 60.0) for minute in range(30)]
    assert [len(alerts) for alerts in fired] == [1] + [0] * 29
    last_breach_s = NOW_S + 29 * 60.0
    assert evaluator.evaluate(source, last_breach_s + 14 * 60.0) == []
    # That breach restarted the cool-down: 15 quiet minutes from it.
    assert evaluator.evaluate(source, last_breach_s + 28 * 60.0) == []
    assert names(evaluator.evaluate(source, last_breach_s + 43 * 60.0)) == ["error_rate"]


def test_cool_down_is_per_threshold() -> None:
    """A firing error rate does not hold back a critical error that starts later."""
    evaluator = AlertEvaluator()
    source = FakeSource(rate_per_min=3.0)
    assert names(evaluator.evaluate(source, NOW_S)) == ["error_rate"]
    source.critical = 1
    assert names(evaluator.evaluate(source, NOW_S + 60.0)) == ["critical_errors"]


@pytest.mark.parametrize(
    ("name", "severity", "rule"),
    [
        ("critical_errors", ErrorSeverity.CRITICAL, "critical"),
        ("error_rate", ErrorSeverity.HIGH, "high"),
        ("recovery_failure_rate", ErrorSeverity.HIGH, "high"),
        ("breaker_trips", ErrorSeverity.HIGH, "high"),
    ],
)
def test_alert_becomes_a_failure_the_escalation_path_accepts(
    name: str, severity: ErrorSeverity, rule: str
) -> None:
    """to_failure gives a notification of the monitoring group, routed by its severity."""
    source = FakeSource(
        rate_per_min=5.0, critical=1, outcomes=Recovery(recovered=0, dead=10), trips=3
    )
    [alert] = [a for a in check(source, NOW_S, AlertThresholds()) if a.name == name]
    failure = to_failure(alert, task_name="tasks.evaluate_alerts")
    notification = Notification.from_failure(failure)
    assert notification.key == group_key(ALERT_ERROR_TYPE, ALERT_COMPONENT)
    assert notification.severity is severity
    assert notification.examples[0].operation == name
    assert notification.examples[0].message == alert.message
    assert failure["occurred_at"] == "2026-01-06T15:30:00+00:00"
    assert DEFAULT_POLICY.route(notification).name == rule
    # The same alert evaluated twice is the same failure (a re-published evaluation).
    assert to_failure(alert)["error_id"] == failure["error_id"]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: StaticThresholds(error_rate_per_min=0), "error_rate_per_min"),
        (lambda: StaticThresholds(error_rate_window_s=float("nan")), "error_rate_window_s"),
        (lambda: StaticThresholds(critical_errors=0), "critical_errors"),
        (lambda: StaticThresholds(breaker_trips=True), "breaker_trips"),
        (lambda: StaticThresholds(recovery_failure_rate=50), "fraction in \\(0, 1\\]"),
        (lambda: DynamicThresholds(percentile=0), "percentile"),
        (lambda: DynamicThresholds(min_samples=0), "min_samples"),
        (lambda: DynamicThresholds(seasonal_factor=0.5), "seasonal_factor"),
        (lambda: AlertThresholds(cooldown_s=-1), "cooldown_s"),
        (lambda: AlertThresholds(dynamic=DynamicThresholds(history_s=300)), "history_s"),
    ],
)
def test_invalid_thresholds_are_configuration_errors(build: Any, message: str) -> None:
    """Each invalid value is refused with a message naming it."""
    with pytest.raises(ConfigurationError, match=message):
        build()


counts = st.lists(st.integers(min_value=0, max_value=500), min_size=0, max_size=60)


@given(counts, st.floats(min_value=0, max_value=86_400 * 2))
def test_dynamic_threshold_is_never_below_the_static_floor(
    buckets: list[int], offset_s: float
) -> None:
    """Whatever the history and the hour, the threshold is at least 1.0/min."""
    threshold, _ = error_rate_threshold(history(buckets), NOW_S + offset_s, STATIC, DYNAMIC)
    assert threshold >= STATIC.error_rate_per_min


@given(counts, st.data())
def test_more_errors_in_the_history_never_lower_the_threshold(
    buckets: list[int], data: st.DataObject
) -> None:
    """Raising any bucket of the history never lowers the threshold (it is monotone)."""
    raises = data.draw(st.lists(st.integers(0, 100), min_size=len(buckets), max_size=len(buckets)))
    higher = [count + extra for count, extra in zip(buckets, raises, strict=True)]
    before, _ = error_rate_threshold(history(buckets), NOW_S, STATIC, DYNAMIC)
    after, _ = error_rate_threshold(history(higher), NOW_S, STATIC, DYNAMIC)
    assert after >= before - 1e-9


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=50), st.floats(0, 100))
def test_percentile_lies_within_the_values(values: list[float], q: float) -> None:
    """A percentile is between the smallest and the largest value."""
    assert min(values) <= percentile(values, q) <= max(values)


def test_dynamic_thresholds_rarely_fire_outside_incidents_and_catch_every_incident() -> None:
    """On 4 seeded synthetic days with 5 incidents (day 1 history only), fewer than 5% of the
    quiet minutes breach and every incident is detected (bench.thresholds_fp, smaller)."""
    series = synthesize(days=4, incidents=5, seed=11, warmup_days=1)
    outcome = measure(series, AlertThresholds(), warmup_days=1)
    assert outcome.quiet > 3 * 1440 * 0.9
    assert outcome.fp_rate < 0.05
    assert outcome.detected == outcome.incidents == 5
