"""Alert thresholds: when the fleet's error metrics should tell a person.

Pure logic over a :class:`ThresholdSource` (in production the fleet-wide
``resilience.observability.metrics.ErrorMetrics`` plus the breakers' transition events), so it is
tested without Redis. Four thresholds, each breached when the observed value is ``>=`` its
threshold:

- ``critical_errors``: CRITICAL errors in the last 5 minutes (1).
- ``error_rate``: errors per minute over the last 5 minutes (1.0/min). Dynamic: once the
  history holds ``min_samples`` 5-minute buckets, the threshold is the largest of the static
  one (a floor), the 95th percentile of the history and twice (``seasonal_factor``) the mean
  of this UTC hour of day in the history (so the market-hours peak is judged against market
  hours, not against the night).
- ``recovery_failure_rate``: failures that ended in a dead letter instead of being recovered
  by a retry, as a fraction of both (0.5), judged once there are ``recovery_min_outcomes``.
- ``breaker_trips``: breakers that opened in the last 10 minutes, all resources (3).

:class:`AlertEvaluator` fires a breached threshold once per incident: it fires again only
after the threshold was not breached for ``cooldown_s``. :func:`to_failure` turns an alert
into the escalation path's input (``tasks.escalate(notification=...)``).
"""

from __future__ import annotations

import enum
import math
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from resilience.errors import ConfigurationError
from resilience.policy.context import ErrorNotificationData
from resilience.policy.retry import ErrorSeverity

__all__ = [
    "ALERT_COMPONENT",
    "ALERT_ERROR_TYPE",
    "AlertEvaluator",
    "AlertThresholds",
    "CooldownStore",
    "DynamicThresholds",
    "MemoryCooldown",
    "RecoveryCounts",
    "StaticThresholds",
    "ThresholdAlert",
    "ThresholdKind",
    "ThresholdSource",
    "check",
    "error_rate_threshold",
    "percentile",
    "to_failure",
]

# Not a class of resilience.errors: escalation rules route it by severity (a rule's
# error_types only accept the hierarchy's class names).
ALERT_ERROR_TYPE = "AlertThresholdBreached"
ALERT_COMPONENT = "monitoring"

_SECONDS_PER_HOUR = 3600
_HOURS_PER_DAY = 24
# The priorities resilience.policy.handler gives final failures of the same severity.
_PRIORITY = {
    ErrorSeverity.CRITICAL: "P1",
    ErrorSeverity.HIGH: "P2",
    ErrorSeverity.MEDIUM: "P3",
    ErrorSeverity.LOW: "P4",
}
# uuid5 namespace of alert ids: the same alert evaluated twice gets the same id.
_ALERT_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "alchemiser:alerts")


class RecoveryCounts(Protocol):
    """How failures ended: recovered by a retry, or dead-lettered."""

    @property
    def recovered(self) -> int: ...

    @property
    def dead(self) -> int: ...


class ThresholdSource(Protocol):
    """The fleet's metrics the thresholds read; windows end at the source's now."""

    def error_rate_per_min(self, window_s: float, key: str | None = None) -> float:
        """Errors per minute over the last ``window_s``."""
        ...

    def critical_count(self, window_s: float) -> int:
        """CRITICAL errors in the last ``window_s``."""
        ...

    def series(
        self, window_s: float, step_s: float = 60, key: str | None = None
    ) -> list[tuple[float, int]]:
        """Errors per bucket of ``step_s`` over the last ``window_s``: (bucket start epoch s,
        count), oldest first."""
        ...

    def recovery(self) -> RecoveryCounts:
        """Failures recovered and dead-lettered."""
        ...

    def breaker_trips(self, window_s: float) -> int:
        """Transitions of any breaker to ``open`` in the last ``window_s`` (operator actions
        such as ``force_open`` are not trips)."""
        ...


class ThresholdKind(enum.StrEnum):
    """Whether the configured value or the learned one decided."""

    STATIC = "static"
    DYNAMIC = "dynamic"


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"alerts: {name} must be a finite number > 0, got {value!r}")


def _at_least_one(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"alerts: {name} must be a whole number >= 1, got {value!r}")


@dataclass(frozen=True, slots=True)
class StaticThresholds:
    """The plan's fixed thresholds; ``error_rate_per_min`` is also the dynamic one's floor."""

    error_rate_per_min: float = 1.0
    error_rate_window_s: float = 300.0
    critical_errors: int = 1
    critical_window_s: float = 300.0
    recovery_failure_rate: float = 0.5
    # A rate of two outcomes says little: below this many it is not judged.
    recovery_min_outcomes: int = 10
    breaker_trips: int = 3
    breaker_window_s: float = 600.0

    def __post_init__(self) -> None:
        for name in ("error_rate_per_min", "error_rate_window_s", "critical_window_s"):
            _positive(name, getattr(self, name))
        _positive("breaker_window_s", self.breaker_window_s)
        for name in ("critical_errors", "recovery_min_outcomes", "breaker_trips"):
            _at_least_one(name, getattr(self, name))
        if not 0 < self.recovery_failure_rate <= 1:
            raise ConfigurationError(
                "alerts: recovery_failure_rate is a fraction in (0, 1] (0.5 is 50%),"
                f" got {self.recovery_failure_rate!r}"
            )


@dataclass(frozen=True, slots=True)
class DynamicThresholds:
    """How the error rate's threshold learns from its own history (5-minute buckets)."""

    percentile: float = 95.0
    min_samples: int = 10
    # A day and the whole of this hour yesterday, within the 26 h ErrorMetrics keeps.
    history_s: float = 25 * 3600.0
    # The hour's mean is its typical rate, not a ceiling: alert at twice the usual.
    seasonal_factor: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.percentile <= 100:
            raise ConfigurationError(
                f"alerts: percentile must be in (0, 100], got {self.percentile!r}"
            )
        _at_least_one("min_samples", self.min_samples)
        _positive("history_s", self.history_s)
        if not (math.isfinite(self.seasonal_factor) and self.seasonal_factor >= 1):
            raise ConfigurationError(
                "alerts: seasonal_factor must be a finite number >= 1 (a threshold below the"
                f" hour's mean would fire in normal hours), got {self.seasonal_factor!r}"
            )


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """Every threshold, and how long a threshold stays quiet before it may fire again."""

    static: StaticThresholds = field(default_factory=StaticThresholds)
    dynamic: DynamicThresholds = field(default_factory=DynamicThresholds)
    cooldown_s: float = 900.0

    def __post_init__(self) -> None:
        _positive("cooldown_s", self.cooldown_s)
        if self.dynamic.history_s <= self.static.error_rate_window_s:
            raise ConfigurationError(
                f"alerts: history_s ({self.dynamic.history_s:g}) must be longer than"
                f" error_rate_window_s ({self.static.error_rate_window_s:g})"
            )


@dataclass(frozen=True, slots=True)
class ThresholdAlert:
    """One breached threshold at one evaluation."""

    name: str  # critical_errors, error_rate, recovery_failure_rate, breaker_trips
    observed: float
    threshold: float
    kind: ThresholdKind
    severity: ErrorSeverity
    message: str
    at_s: float  # the evaluation's time, epoch seconds


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks (numpy's
    default); ``ValueError`` for no values or ``q`` outside [0, 100]."""
    if not values:
        raise ValueError("the percentile of no values is undefined")
    if not 0 <= q <= 100:
        raise ValueError(f"a percentile is in [0, 100], got {q!r}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _utc_hour(epoch_s: float) -> int:
    # Epoch seconds have no leap seconds, so this is the UTC hour without a datetime.
    return int(epoch_s // _SECONDS_PER_HOUR) % _HOURS_PER_DAY


def error_rate_threshold(
    series: Sequence[tuple[float, int]],
    now_s: float,
    static: StaticThresholds,
    dynamic: DynamicThresholds,
) -> tuple[float, ThresholdKind]:
    """The error rate's threshold (errors/min) at ``now_s`` from ``series`` (buckets of
    ``error_rate_window_s``): static below ``min_samples`` buckets of history, else the
    largest of the static floor, the history's percentile and this hour's mean times the
    seasonal factor (the hour counts once it has ``min_samples`` buckets itself).

    Buckets that overlap the window being judged are not history: an incident would raise
    its own threshold.
    """
    step_s = static.error_rate_window_s
    per_min = 60.0 / step_s
    history_end_s = now_s - step_s
    # The hour most of the judged window lies in: just after the hour turns, the window still
    # holds the last hour's errors (the minutes after the market close).
    hour = _utc_hour(now_s - step_s / 2)
    history: list[float] = []
    same_hour: list[float] = []
    for start_s, count in series:
        if start_s + step_s <= history_end_s:
            history.append(count * per_min)
            if _utc_hour(start_s) == hour:
                same_hour.append(count * per_min)
    floor = static.error_rate_per_min
    if len(history) < dynamic.min_samples:
        return floor, ThresholdKind.STATIC
    learned = percentile(history, dynamic.percentile)
    if len(same_hour) >= dynamic.min_samples:
        learned = max(learned, statistics.fmean(same_hour) * dynamic.seasonal_factor)
    if learned <= floor:
        return floor, ThresholdKind.STATIC
    return learned, ThresholdKind.DYNAMIC


# Critical errors are told at once; the other thresholds say the system is degrading.
_SEVERITY = {
    "critical_errors": ErrorSeverity.CRITICAL,
    "error_rate": ErrorSeverity.HIGH,
    "recovery_failure_rate": ErrorSeverity.HIGH,
    "breaker_trips": ErrorSeverity.HIGH,
}


def _judge(
    name: str, observed: float, threshold: float, *, kind: ThresholdKind, what: str, now_s: float
) -> list[ThresholdAlert]:
    """The alert of a breach (``observed >= threshold``), or none."""
    if observed < threshold:
        return []
    message = f"{what}: {observed:g} >= {kind.value} threshold {threshold:g}"
    return [ThresholdAlert(name, observed, threshold, kind, _SEVERITY[name], message, now_s)]


def check(
    source: ThresholdSource, now_s: float, thresholds: AlertThresholds
) -> list[ThresholdAlert]:
    """Every threshold breached at ``now_s`` (``source`` reads its windows at the same now)."""
    static = thresholds.static
    alerts = _judge(
        "critical_errors",
        source.critical_count(static.critical_window_s),
        static.critical_errors,
        kind=ThresholdKind.STATIC,
        what=f"critical errors in the last {static.critical_window_s:g} s",
        now_s=now_s,
    )
    window_s = static.error_rate_window_s
    history = source.series(thresholds.dynamic.history_s, step_s=window_s)
    threshold, kind = error_rate_threshold(history, now_s, static, thresholds.dynamic)
    alerts += _judge(
        "error_rate",
        source.error_rate_per_min(window_s),
        threshold,
        kind=kind,
        what=f"errors per minute over the last {window_s:g} s",
        now_s=now_s,
    )
    recovery = source.recovery()
    outcomes = recovery.recovered + recovery.dead
    if outcomes >= static.recovery_min_outcomes:
        alerts += _judge(
            "recovery_failure_rate",
            recovery.dead / outcomes,
            static.recovery_failure_rate,
            kind=ThresholdKind.STATIC,
            what=f"failures dead-lettered instead of recovered ({recovery.dead} of {outcomes})",
            now_s=now_s,
        )
    alerts += _judge(
        "breaker_trips",
        source.breaker_trips(static.breaker_window_s),
        static.breaker_trips,
        kind=ThresholdKind.STATIC,
        what=f"breakers opened in the last {static.breaker_window_s:g} s",
        now_s=now_s,
    )
    return alerts


class CooldownStore(Protocol):
    """Remembers when each threshold was last breached (fleet-wide: a Redis key per name that
    expires after ``cooldown_s``, refreshed by ``SET ... EX cooldown_s GET``)."""

    def note_breach(self, name: str, now_s: float, cooldown_s: float) -> bool:
        """Note that ``name`` is breached at ``now_s``; true when it was not breached in the
        ``cooldown_s`` before (a new incident)."""
        ...


class MemoryCooldown:
    """A :class:`CooldownStore` in this process (one evaluator, tests, the benchmark)."""

    def __init__(self) -> None:
        self._last_breach_s: dict[str, float] = {}

    def note_breach(self, name: str, now_s: float, cooldown_s: float) -> bool:
        """Note that ``name`` is breached at ``now_s``; true when it starts a new incident."""
        last_s = self._last_breach_s.get(name)
        self._last_breach_s[name] = now_s
        return last_s is None or now_s - last_s >= cooldown_s


class AlertEvaluator:
    """Checks the thresholds and fires each breach once per incident."""

    def __init__(
        self, thresholds: AlertThresholds | None = None, cooldown: CooldownStore | None = None
    ) -> None:
        self._thresholds = thresholds if thresholds is not None else AlertThresholds()
        self._cooldown = cooldown if cooldown is not None else MemoryCooldown()

    def evaluate(self, source: ThresholdSource, now_s: float) -> list[ThresholdAlert]:
        """The alerts to fire at ``now_s``: breaches that start an incident."""
        fired = []
        for alert in check(source, now_s, self._thresholds):
            # Every breach is noted, fired or not: a long incident keeps its cool-down alive.
            if self._cooldown.note_breach(alert.name, now_s, self._thresholds.cooldown_s):
                fired.append(alert)
        return fired


def to_failure(alert: ThresholdAlert, *, task_name: str = "") -> ErrorNotificationData:
    """The escalation path's input for ``alert`` (``tasks.escalate(notification=...)``); all
    threshold alerts form one group, ``AlertThresholdBreached`` in ``monitoring``, one operation
    per threshold. ``task_name``: the task that evaluated the thresholds."""
    return {
        "severity": alert.severity.value,
        "priority": _PRIORITY[alert.severity],
        "title": f"{ALERT_ERROR_TYPE} in {ALERT_COMPONENT}: {alert.name}",
        "error_type": ALERT_ERROR_TYPE,
        "error_id": str(uuid.uuid5(_ALERT_IDS, f"{alert.name}@{alert.at_s!r}")),
        "message": alert.message,
        "component": ALERT_COMPONENT,
        "operation": alert.name,
        "task_name": task_name,
        "occurred_at": datetime.fromtimestamp(alert.at_s, UTC).isoformat(),
        "reason": f"{alert.kind.value} threshold breached",
    }
