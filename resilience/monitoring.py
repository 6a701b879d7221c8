"""The alert thresholds (resilience.alerts) run against the fleet: their data from Redis, their
cool-down shared by every worker, their breaches turned into escalation input.

Beat asks for an evaluation every minute (``tasks.escalate`` with ``evaluate``); whichever
worker runs it reads the same fleet-wide metrics, and the cool-down lives in Redis, so a
breach fires once per incident however many workers evaluate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

from redis import Redis

from resilience.alerts import (
    AlertEvaluator,
    AlertThresholds,
    DynamicThresholds,
    StaticThresholds,
    to_failure,
)
from resilience.clock import Clock
from resilience.context import ErrorNotificationData
from resilience.errors import ConfigurationError
from resilience.keys import KeySpace
from resilience.metrics import BUCKET_S, HORIZON_S, ErrorMetrics, RecoveryStats

__all__ = ["FleetSignals", "RedisCooldown", "ThresholdMonitor", "thresholds_from_mapping"]

EVALUATING_TASK = "tasks.escalate"


class RedisCooldown:
    """The thresholds' cool-down in Redis: one key per threshold, refreshed at every breach."""

    def __init__(self, client: Redis, keys: KeySpace) -> None:
        self._client = client
        self._keys = keys

    def note_breach(self, name: str, now_s: float, cooldown_s: float) -> bool:
        """True when ``name`` was not breached within the last ``cooldown_s`` (a new incident);
        every breach restarts the cool-down."""
        previous = self._client.set(
            self._keys.threshold_cooldown(name), repr(now_s), ex=math.ceil(cooldown_s), get=True
        )
        return previous is None


class FleetSignals:
    """What the thresholds read: the fleet's error metrics, and breaker trips from the
    breakers' transition streams (an operator's ``breaker open`` is not a trip)."""

    def __init__(
        self, metrics: ErrorMetrics, client: Redis, keys: KeySpace, breakers: list[str]
    ) -> None:
        self._metrics = metrics
        self._client = client
        self._keys = keys
        self._breakers = breakers

    def error_rate_per_min(self, window_s: float, key: str | None = None) -> float:
        return self._metrics.error_rate_per_min(window_s, key)

    def critical_count(self, window_s: float) -> int:
        return self._metrics.critical_count(window_s)

    def series(
        self, window_s: float, step_s: float = 60, key: str | None = None
    ) -> list[tuple[float, int]]:
        return self._metrics.series(window_s, step_s, key)

    def recovery(self) -> RecoveryStats:
        return self._metrics.recovery()

    def breaker_trips(self, window_s: float) -> int:
        seconds, micros = self._client.time()
        since_ms = int((seconds + micros / 1e6 - window_s) * 1000)
        pipe = self._client.pipeline(transaction=False)
        for name in self._breakers:
            pipe.xrange(self._keys.resource(name)[3], min=str(since_ms))
        streams = cast("list[list[tuple[str, dict[str, str]]]]", pipe.execute())
        return sum(1 for entries in streams for _, fields in entries if fields.get("to") == "open")


class ThresholdMonitor:
    """Evaluates the thresholds now; what fired comes back as escalation input."""

    def __init__(self, evaluator: AlertEvaluator, signals: FleetSignals, clock: Clock) -> None:
        self._evaluator = evaluator
        self._signals = signals
        self._clock = clock

    def evaluate(self) -> list[ErrorNotificationData]:
        """The breaches that start an incident now, as final failures to escalate."""
        fired = self._evaluator.evaluate(self._signals, self._clock.now_s())
        return [to_failure(alert, task_name=EVALUATING_TASK) for alert in fired]


_STATIC_KEYS = frozenset(StaticThresholds.__dataclass_fields__)
_DYNAMIC_KEYS = frozenset(DynamicThresholds.__dataclass_fields__)


def thresholds_from_mapping(raw: Mapping[str, Any]) -> AlertThresholds:
    """The ``[alert_thresholds]`` table: the static thresholds' fields, ``cooldown_s``, and a
    ``dynamic`` table of the dynamic ones' fields; absent fields keep the plan's defaults."""
    known = _STATIC_KEYS | {"cooldown_s", "dynamic"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigurationError(
            f"alert_thresholds: unknown key(s) {', '.join(unknown)};"
            f" known: {', '.join(sorted(known))}"
        )
    dynamic_raw = raw.get("dynamic", {})
    if not isinstance(dynamic_raw, Mapping):
        raise ConfigurationError("alert_thresholds: dynamic is a table")
    unknown = sorted(set(dynamic_raw) - _DYNAMIC_KEYS)
    if unknown:
        raise ConfigurationError(
            f"alert_thresholds.dynamic: unknown key(s) {', '.join(unknown)};"
            f" known: {', '.join(sorted(_DYNAMIC_KEYS))}"
        )
    cooldown = raw.get("cooldown_s", AlertThresholds().cooldown_s)
    thresholds = AlertThresholds(
        static=StaticThresholds(**{k: v for k, v in raw.items() if k in _STATIC_KEYS}),
        dynamic=DynamicThresholds(**dict(dynamic_raw)),
        cooldown_s=cooldown,
    )
    # The error rate is read in whole metric buckets; anything else fails every evaluation.
    if thresholds.static.error_rate_window_s % BUCKET_S:
        raise ConfigurationError(
            f"alert_thresholds: error_rate_window_s must be a multiple of {BUCKET_S} s (the"
            f" metrics' bucket), got {thresholds.static.error_rate_window_s:g}"
        )
    if thresholds.dynamic.history_s > HORIZON_S:
        raise ConfigurationError(
            f"alert_thresholds.dynamic: history_s is at most {HORIZON_S} s (what the metrics"
            f" keep), got {thresholds.dynamic.history_s:g}"
        )
    return thresholds
