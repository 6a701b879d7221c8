"""The alert thresholds (resilience.observability.thresholds) run against the fleet: their data from
Redis, their cool-down shared by every worker, their breaches turned into escalation input.

Beat asks for an evaluation every minute (``tasks.escalate`` with ``evaluate``); whichever
worker runs it reads the same fleet-wide metrics, and the cool-down lives in Redis, so a
breach fires once per incident however many workers evaluate.
"""

from __future__ import annotations

import math
from typing import Self, cast

from pydantic import Field, model_validator
from redis import Redis

from resilience.config_table import ConfigTable, Number, WholeNumber, placed
from resilience.errors import ConfigurationError
from resilience.observability.metrics import BUCKET_S, HORIZON_S, ErrorMetrics, RecoveryStats
from resilience.observability.thresholds import (
    AlertEvaluator,
    AlertThresholds,
    DynamicThresholds,
    StaticThresholds,
    to_failure,
)
from resilience.policy.context import ErrorNotificationData
from resilience.storage.clock import Clock
from resilience.storage.keys import KeySpace

__all__ = [
    "AlertThresholdsTable",
    "DynamicThresholdsTable",
    "FleetSignals",
    "RedisCooldown",
    "ThresholdMonitor",
]

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


class DynamicThresholdsTable(ConfigTable):
    """``[alert_thresholds.dynamic]``: :class:`DynamicThresholds`' fields; absent, its
    defaults."""

    percentile: Number | None = None
    min_samples: WholeNumber | None = None
    history_s: Number | None = None
    seasonal_factor: Number | None = None


class AlertThresholdsTable(ConfigTable):
    """The ``[alert_thresholds]`` table: :class:`StaticThresholds`' fields, ``cooldown_s`` and
    a ``dynamic`` table; absent fields keep the plan's defaults."""

    error_rate_per_min: Number | None = None
    error_rate_window_s: Number | None = None
    critical_errors: WholeNumber | None = None
    critical_window_s: Number | None = None
    recovery_failure_rate: Number | None = None
    recovery_min_outcomes: WholeNumber | None = None
    breaker_trips: WholeNumber | None = None
    breaker_window_s: Number | None = None
    cooldown_s: Number | None = None
    dynamic: DynamicThresholdsTable = Field(default_factory=DynamicThresholdsTable)

    @model_validator(mode="after")
    def _buildable(self) -> Self:
        try:
            thresholds = self.build()
        except ConfigurationError as bad:
            raise placed(str(bad)) from None
        # The error rate is read in whole metric buckets; anything else fails every evaluation.
        if thresholds.static.error_rate_window_s % BUCKET_S:
            raise placed(
                f"alert_thresholds: error_rate_window_s must be a multiple of {BUCKET_S} s (the"
                f" metrics' bucket), got {thresholds.static.error_rate_window_s:g}"
            )
        if thresholds.dynamic.history_s > HORIZON_S:
            raise placed(
                f"alert_thresholds.dynamic: history_s is at most {HORIZON_S} s (what the"
                f" metrics keep), got {thresholds.dynamic.history_s:g}"
            )
        return self

    def build(self) -> AlertThresholds:
        """The plan's thresholds with the table's fields over them."""
        given = self.model_dump(exclude_none=True, exclude={"dynamic"})
        cooldown_s = given.pop("cooldown_s", AlertThresholds().cooldown_s)
        return AlertThresholds(
            static=StaticThresholds(**given),
            dynamic=DynamicThresholds(**self.dynamic.model_dump(exclude_none=True)),
            cooldown_s=cooldown_s,
        )
