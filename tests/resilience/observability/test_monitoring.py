"""The alert thresholds against the fleet (resilience.observability.monitoring): the shared
cool-down, breaker
trips read from the breakers' transition streams, the config table, one evaluation."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from pydantic import ValidationError

from resilience.config_table import describe_errors
from resilience.observability.metrics import ErrorMetrics
from resilience.observability.monitoring import (
    AlertThresholdsTable,
    FleetSignals,
    RedisCooldown,
    ThresholdMonitor,
)
from resilience.observability.thresholds import ALERT_ERROR_TYPE, AlertEvaluator, AlertThresholds
from resilience.scrub import Scrubber
from resilience.storage.clock import ManualClock
from resilience.storage.keys import KeySpace


def test_the_cooldown_is_one_incident_per_breach_series_fleet_wide(
    client: redis.Redis, keys: KeySpace
) -> None:
    """The first breach starts an incident; a breach within the cool-down (from any process)
    does not, and restarts it; once the key has expired the next breach is a new incident."""
    first, second = RedisCooldown(client, keys), RedisCooldown(client, keys)
    assert first.note_breach("error_rate", 100.0, 900.0) is True
    assert second.note_breach("error_rate", 160.0, 900.0) is False
    assert 899 <= client.ttl(keys.threshold_cooldown("error_rate")) <= 900
    assert second.note_breach("critical_errors", 160.0, 900.0) is True  # its own incident
    client.delete(keys.threshold_cooldown("error_rate"))  # what the expiry does
    assert first.note_breach("error_rate", 2000.0, 900.0) is True


def trip(client: redis.Redis, keys: KeySpace, resource: str, to: str, at_ms: int) -> None:
    client.xadd(keys.resource(resource)[3], {"from": "closed", "to": to}, id=f"{at_ms}-0")


def test_breaker_trips_are_openings_within_the_window_on_every_breaker(
    client: redis.Redis, keys: KeySpace
) -> None:
    seconds, _ = client.time()
    now_ms = seconds * 1000
    trip(client, keys, "broker.orders", "open", now_ms - 900_000)  # outside 10 minutes
    trip(client, keys, "broker.orders", "open", now_ms - 300_000)
    trip(client, keys, "broker.orders", "half_open", now_ms - 200_000)
    trip(client, keys, "broker.orders", "open", now_ms - 100_000)
    trip(client, keys, "broker.data", "open", now_ms - 50_000)
    trip(client, keys, "broker.data", "forced_open", now_ms - 40_000)  # an operator's, no trip
    metrics = ErrorMetrics(client, keys, ManualClock(), scrubber=Scrubber())
    signals = FleetSignals(metrics, client, keys, ["broker.data", "broker.orders"])
    assert signals.breaker_trips(600.0) == 3
    assert signals.breaker_trips(60.0) == 1


def test_the_monitor_turns_a_breach_into_one_escalation_input(
    client: redis.Redis, keys: KeySpace
) -> None:
    """Three trips in ten minutes breach the plan's breaker threshold: the first evaluation
    gives one failure to escalate, the next (same incident) none."""
    seconds, _ = client.time()
    for back_s in (30, 20, 10):
        trip(client, keys, "broker.orders", "open", (seconds - back_s) * 1000)
    clock = ManualClock(float(seconds))
    metrics = ErrorMetrics(client, keys, clock, scrubber=Scrubber())
    monitor = ThresholdMonitor(
        AlertEvaluator(AlertThresholds(), RedisCooldown(client, keys)),
        FleetSignals(metrics, client, keys, ["broker.orders"]),
        clock,
    )
    (failure,) = monitor.evaluate()
    assert (failure["error_type"], failure["component"], failure["operation"]) == (
        ALERT_ERROR_TYPE,
        "monitoring",
        "breaker_trips",
    )
    assert failure["task_name"] == "tasks.escalate"
    clock.advance(60.0)
    assert monitor.evaluate() == []


def test_the_config_table_overrides_the_plans_thresholds() -> None:
    thresholds = AlertThresholdsTable.model_validate(
        {"breaker_trips": 5, "cooldown_s": 60, "dynamic": {"percentile": 99, "min_samples": 30}}
    ).build()
    assert (thresholds.static.breaker_trips, thresholds.cooldown_s) == (5, 60)
    assert (thresholds.dynamic.percentile, thresholds.dynamic.min_samples) == (99, 30)
    assert AlertThresholdsTable.model_validate({}).build() == AlertThresholds()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"breaker_trip": 5}, "unknown key(s) breaker_trip"),
        ({"dynamic": {"percentil": 99}}, "alert_thresholds.dynamic: unknown key(s) percentil"),
        ({"dynamic": 5}, "dynamic is a table"),
        ({"critical_errors": 0}, "critical_errors must be a whole number >= 1"),
        ({"error_rate_window_s": 90}, "error_rate_window_s must be a multiple of 60 s"),
        ({"dynamic": {"history_s": 30 * 3600}}, "history_s is at most 93600 s"),
        ({"breaker_trips": True}, "alert_thresholds.breaker_trips is a whole number, got True"),
        ({"cooldown_s": "15m"}, "alert_thresholds.cooldown_s is a number, got '15m'"),
    ],
)
def test_a_bad_table_is_refused_with_what_is_wrong(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        AlertThresholdsTable.model_validate(raw)
    assert message in describe_errors(refused.value, "alert_thresholds")
