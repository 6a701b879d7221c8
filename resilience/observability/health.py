"""The fleet's health: HEALTHY, WARNING or CRITICAL, why, and what to do about it.

Every figure comes from Redis (the fleet-wide error metrics, the breakers, the dead letters, the
open alerts), so any process asking gets the same answer. Each rule is one :class:`HealthCheck`;
the report's status is the worst of them. The rules are the plan's, on the same thresholds as
the alerts (:class:`resilience.observability.thresholds.StaticThresholds`, so ``[alert_thresholds]``
moves both), with the guard and the dead letters added:

* CRITICAL: a critical error in the last 5 minutes; a breaker ``open`` or ``forced_open`` (the
  API behind it is cut off for the whole fleet); half or more of the failed tasks that finished
  (recovered or dead-lettered) died, once there are 10 of them.
* WARNING: the error rate over the last 5 minutes at or above 1 per minute; a breaker
  ``half_open`` (probing) or ``disabled`` (bypassed by an operator); a task dead-lettered in the
  last 15 minutes.

The deployment adds checks of what lives outside the fleet's state (``extra_checks``): on a
Redis broker, messages held by a worker that is gone
(:mod:`resilience.observability.held_messages`), WARNING while they wait for a sweep and CRITICAL
when nobody sweeps.

A Redis that lost its data (:mod:`resilience.storage.epoch`: the fleet epoch a worker remembered is
gone) is CRITICAL for a day, first of all: every other figure starts again from nothing then.

Old dead letters waiting for an operator are reported (``dlq.awaiting``) but do not make the
fleet unhealthy: they are work to do, not a fault now. Time is the fleet's clock (Redis time plus
the chaos drill's shift), so ``alchemiser chaos clock`` ages an incident out as it does alerts.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from resilience.deadletter.store import DeadLetterStore
from resilience.errors import error_class_by_name
from resilience.guard.status import BreakerState, BreakerStatus
from resilience.notify.alert_store import AlertState
from resilience.observability.thresholds import StaticThresholds
from resilience.storage.clock import Clock
from resilience.storage.epoch import EpochState

__all__ = [
    "RECENT_DEAD_LETTER_WINDOW_S",
    "RECOMMENDATIONS",
    "ErrorSignals",
    "HealthCheck",
    "HealthMonitor",
    "HealthReport",
    "HealthStatus",
    "RecoverySignals",
]


class HealthStatus(enum.StrEnum):
    """The fleet's status; ``alchemiser health`` exits with :attr:`exit_code` (CONTRACT)."""

    HEALTHY = "healthy"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def exit_code(self) -> int:
        return _RANK[self]


_RANK = {HealthStatus.HEALTHY: 0, HealthStatus.WARNING: 1, HealthStatus.CRITICAL: 2}
# A task dead-lettered this recently makes a warning; older ones only wait for an operator.
RECENT_DEAD_LETTER_WINDOW_S = 900.0


class RecoverySignals(Protocol):
    """How failed tasks ended (resilience.observability.metrics.RecoveryStats)."""

    @property
    def recovered(self) -> int: ...

    @property
    def dead(self) -> int: ...

    @property
    def failure_rate(self) -> float: ...


class ErrorSignals(Protocol):
    """The fleet-wide error metrics the rules read (``observability.metrics.ErrorMetrics``)."""

    def error_rate_per_min(self, window_s: float, key: str | None = None) -> float: ...

    def critical_count(self, window_s: float) -> int: ...

    def error_counts(self) -> dict[str, int]: ...

    def recovery(self) -> RecoverySignals: ...


class BreakerSource(Protocol):
    """Every configured breaker now (resilience.guard.status.GuardStatus)."""

    def breakers(self) -> list[BreakerStatus]: ...


class AlertSource(Protocol):
    """The open alerts (resilience.notify.alert_store.AlertStore)."""

    def open_alerts(self) -> list[AlertState]: ...


class EpochSource(Protocol):
    """The fleet epoch and the last data loss (resilience.storage.epoch.EpochStore)."""

    def read(self) -> EpochState: ...


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One rule's verdict."""

    name: str
    status: HealthStatus
    message: str
    observed: float | None = None
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Everything ``alchemiser health --json``, ``/health`` and the dashboard show."""

    status: HealthStatus
    checked_at: str  # ISO-8601 UTC, on the fleet's clock
    checks: tuple[HealthCheck, ...]
    summary: dict[str, float]
    breakers: tuple[BreakerStatus, ...]
    dlq: dict[str, int]
    recovery: dict[str, float]
    error_counts: dict[str, int]
    active_alerts: tuple[AlertState, ...]
    recommendations: tuple[str, ...] = field(default=())

    @property
    def reasons(self) -> tuple[str, ...]:
        """What is not healthy, worst first."""
        failing = [c for c in self.checks if c.status is not HealthStatus.HEALTHY]
        return tuple(c.message for c in sorted(failing, key=lambda c: -_RANK[c.status]))

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (CONTRACT: ``{"status": ..., ...}``)."""
        return {
            "status": self.status.value,
            "checked_at": self.checked_at,
            "reasons": list(self.reasons),
            "summary": self.summary,
            "checks": [{**asdict(c), "status": c.status.value} for c in self.checks],
            "breakers": [b.to_dict() for b in self.breakers],
            "dlq": self.dlq,
            "recovery": self.recovery,
            "error_counts": self.error_counts,
            "active_alerts": [_alert_row(a) for a in self.active_alerts],
            "recommendations": list(self.recommendations),
        }


def _alert_row(alert: AlertState) -> dict[str, Any]:
    """An open alert in the report, its id under ``id`` as in ``alerts list --json``."""
    row = asdict(alert)
    return {"id": row.pop("alert_id"), **row}


class HealthMonitor:
    """Builds health reports from the fleet's shared state."""

    def __init__(
        self,
        errors: ErrorSignals,
        breakers: BreakerSource,
        dead_letters: DeadLetterStore,
        alerts: AlertSource,
        *,
        epochs: EpochSource,
        clock: Clock,
        thresholds: StaticThresholds | None = None,
        recent_dead_letter_window_s: float = RECENT_DEAD_LETTER_WINDOW_S,
        extra_checks: Sequence[Callable[[], HealthCheck]] = (),
        advice: Mapping[str, str] | None = None,
    ) -> None:
        self._errors = errors
        # What to recommend per error class (default RECOMMENDATIONS, below).
        self._advice = RECOMMENDATIONS if advice is None else advice
        self._breakers = breakers
        self._dead_letters = dead_letters
        self._alerts = alerts
        self._epochs = epochs
        self._clock = clock
        self.thresholds = thresholds or StaticThresholds()
        self._recent_window_s = recent_dead_letter_window_s
        # Checks of what lives outside the fleet's state (the broker's held messages).
        self._extra_checks = tuple(extra_checks)

    def report(self) -> HealthReport:
        """The fleet's health now."""
        rules = self.thresholds
        now_s = self._clock.now_s()
        error_rate = self._errors.error_rate_per_min(rules.error_rate_window_s)
        critical = self._errors.critical_count(rules.critical_window_s)
        recovery = self._errors.recovery()
        breakers = tuple(self._breakers.breakers())
        epoch = self._epochs.read()
        recent_ms = int((now_s - self._recent_window_s) * 1000)
        dlq = {
            "awaiting": self._dead_letters.awaiting(),
            "recent": self._dead_letters.dead_since(recent_ms),
        }
        checks = (
            _redis_data(epoch),
            _critical_errors(critical, rules),
            _error_rate(error_rate, rules),
            _recovery(recovery, rules),
            *(_breaker(b) for b in breakers),
            _recent_dead_letters(dlq["recent"], self._recent_window_s),
            *(check() for check in self._extra_checks),
        )
        counts = self._errors.error_counts()
        status = max((c.status for c in checks), key=lambda s: _RANK[s])
        return HealthReport(
            status=status,
            checked_at=datetime.fromtimestamp(now_s, UTC).isoformat(timespec="seconds"),
            checks=checks,
            summary={
                "error_rate_per_min": round(error_rate, 3),
                "critical_errors": critical,
                "dead_letters_awaiting": dlq["awaiting"],
                "breakers_open": sum(b.state in _CUT_OFF for b in breakers),
            },
            breakers=breakers,
            dlq=dlq,
            recovery={
                "recovered": recovery.recovered,
                "dead": recovery.dead,
                "failure_rate": round(recovery.failure_rate, 4),
            },
            error_counts=counts,
            active_alerts=tuple(self._alerts.open_alerts()),
            recommendations=recommendations_for(
                counts, breakers, data_lost=epoch.loss is not None, advice_by_class=self._advice
            ),
        )


_CUT_OFF = (BreakerState.OPEN, BreakerState.FORCED_OPEN)


def _redis_data(state: EpochState) -> HealthCheck:
    if state.loss is not None:
        return HealthCheck("redis_data", HealthStatus.CRITICAL, state.loss.message)
    if state.epoch is None:
        return HealthCheck(
            "redis_data", HealthStatus.HEALTHY, "no fleet epoch yet: no worker has started"
        )
    since = datetime.fromtimestamp(state.epoch.created_at, UTC).isoformat(timespec="seconds")
    return HealthCheck(
        "redis_data", HealthStatus.HEALTHY, f"epoch {state.epoch.epoch_id} kept since {since}"
    )


def _critical_errors(count: int, rules: StaticThresholds) -> HealthCheck:
    minutes = rules.critical_window_s / 60
    if count >= rules.critical_errors:
        return HealthCheck(
            "critical_errors",
            HealthStatus.CRITICAL,
            f"{count} critical error(s) in the last {minutes:g} min",
            count,
            rules.critical_errors,
        )
    return HealthCheck(
        "critical_errors", HealthStatus.HEALTHY, "no critical error", count, rules.critical_errors
    )


def _error_rate(rate: float, rules: StaticThresholds) -> HealthCheck:
    minutes = rules.error_rate_window_s / 60
    status = HealthStatus.WARNING if rate >= rules.error_rate_per_min else HealthStatus.HEALTHY
    return HealthCheck(
        "error_rate",
        status,
        f"{rate:.2f} errors/min over the last {minutes:g} min",
        round(rate, 3),
        rules.error_rate_per_min,
    )


def _recovery(recovery: RecoverySignals, rules: StaticThresholds) -> HealthCheck:
    finished = recovery.recovered + recovery.dead
    rate = recovery.failure_rate
    if finished >= rules.recovery_min_outcomes and rate >= rules.recovery_failure_rate:
        return HealthCheck(
            "recovery",
            HealthStatus.CRITICAL,
            f"{rate:.0%} of failed tasks died ({recovery.dead} of {finished})",
            round(rate, 4),
            rules.recovery_failure_rate,
        )
    return HealthCheck(
        "recovery",
        HealthStatus.HEALTHY,
        f"{recovery.recovered} recovered, {recovery.dead} dead",
        round(rate, 4),
        rules.recovery_failure_rate,
    )


_BREAKER_STATUS = {
    BreakerState.OPEN: (HealthStatus.CRITICAL, "open: calls are refused fleet-wide"),
    BreakerState.FORCED_OPEN: (HealthStatus.CRITICAL, "forced open by an operator"),
    BreakerState.HALF_OPEN: (HealthStatus.WARNING, "half open: probing the API"),
    BreakerState.DISABLED: (HealthStatus.WARNING, "disabled by an operator: nothing protects"),
}


def _breaker(breaker: BreakerStatus) -> HealthCheck:
    status, what = _BREAKER_STATUS.get(breaker.state, (HealthStatus.HEALTHY, "closed"))
    return HealthCheck(f"breaker:{breaker.name}", status, f"breaker {breaker.name} {what}")


def _recent_dead_letters(recent: int, window_s: float) -> HealthCheck:
    minutes = window_s / 60
    status = HealthStatus.WARNING if recent > 0 else HealthStatus.HEALTHY
    return HealthCheck(
        "dead_letters",
        status,
        f"{recent} task(s) dead-lettered in the last {minutes:g} min",
        recent,
        1,
    )


# What to do, by the class of the errors seen (a subclass takes its nearest listed ancestor).
# An application adds its own (and words these for its world) through HealthMonitor(advice=).
RECOMMENDATIONS: Mapping[str, str] = {
    "RateLimitError": (
        "A remote API's rate limit is being hit: lower the resource's rate"
        ' ([resources."<name>".rate_limit]) or spread the schedule.'
    ),
    "RemoteServiceError": (
        "A remote service fails transiently: check its status; the breaker and the retry budget"
        " hold the fleet back meanwhile (alchemiser breaker list)."
    ),
    "SecurityError": (
        "Credentials are refused: rotate or fix them now; nothing is retried until they work."
    ),
    "ConfigurationError": "The configuration is wrong: run a worker in the foreground to see it.",
    "DatabaseError": "Redis misbehaves: check its memory, persistence and network.",
    "ValidationError": (
        "Tasks arrive with bad payloads: find the producer (alchemiser dlq list --error"
        " ValidationError) and fix it; replaying will not help."
    ),
}
_BREAKER_ADVICE = (
    "A breaker refuses every call to its resource, fleet-wide: an open one (the API failed)"
    " probes again at open_until (alchemiser breaker list); one forced open by an operator"
    " stays so until 'alchemiser breaker reset NAME'."
)


_DATA_LOSS_ADVICE = (
    "Redis came back without its data, and nothing brings it back from Redis: turn on its"
    " persistence (appendonly yes) before it restarts again, and rebuild what was lost from the"
    " sources of truth (the systems your tasks act on). The check stays critical for 24 h"
    " (docs/OPERATIONS.md, 'Redis lost its data')."
)


def recommendations_for(
    error_counts: Mapping[str, int],
    breakers: Sequence[BreakerStatus],
    *,
    data_lost: bool = False,
    advice_by_class: Mapping[str, str] = RECOMMENDATIONS,
) -> tuple[str, ...]:
    """Advice for a data loss, open breakers and the error classes present (each once, most
    errors first), from ``advice_by_class``."""
    advice: dict[str, int] = {}
    for key, count in error_counts.items():
        text = _advice_for(key.partition(":")[0], advice_by_class)
        if text is not None and count > 0:
            advice[text] = advice.get(text, 0) + count
    ordered = sorted(advice, key=lambda text: -advice[text])
    if any(b.state in _CUT_OFF for b in breakers):
        ordered.insert(0, _BREAKER_ADVICE)
    if data_lost:
        ordered.insert(0, _DATA_LOSS_ADVICE)
    return tuple(ordered)


def _advice_for(error_type: str, advice_by_class: Mapping[str, str]) -> str | None:
    try:
        cls: type | None = error_class_by_name(error_type)
    except KeyError:
        return advice_by_class.get(error_type)
    while cls is not None and cls is not object:
        if cls.__name__ in advice_by_class:
            return advice_by_class[cls.__name__]
        cls = cls.__base__
    return None
