"""The health rules and report (resilience.observability.health): scripted error signals, breakers
and fleet epoch, the real dead-letter store on Redis, an injected clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import redis

from resilience.deadletter.store import DeadLetterStore
from resilience.guard.status import BreakerState, BreakerStatus
from resilience.notify.alert_store import AlertState
from resilience.observability.health import (
    HealthMonitor,
    HealthStatus,
    recommendations_for,
)
from resilience.observability.thresholds import StaticThresholds
from resilience.storage.clock import ManualClock
from resilience.storage.epoch import DataLoss, Epoch, EpochState, LossCause
from resilience.storage.keys import KeySpace
from tasks.advice import TRADING_ADVICE
from tests.builders import dead_order


@dataclass(frozen=True)
class Recovery:
    recovered: int = 0
    dead: int = 0

    @property
    def failure_rate(self) -> float:
        finished = self.recovered + self.dead
        return self.dead / finished if finished else 0.0


@dataclass
class Signals:
    """Error metrics as scripted numbers."""

    rate: float = 0.0
    critical: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    finished: Recovery = field(default_factory=Recovery)
    asked: list[tuple[str, float]] = field(default_factory=list)

    def error_rate_per_min(self, window_s: float, key: str | None = None) -> float:
        self.asked.append(("rate", window_s))
        return self.rate

    def critical_count(self, window_s: float) -> int:
        self.asked.append(("critical", window_s))
        return self.critical

    def error_counts(self) -> dict[str, int]:
        return dict(self.counts)

    def recovery(self) -> Recovery:
        return self.finished


@dataclass
class Breakers:
    states: dict[str, BreakerState] = field(default_factory=dict)

    def breakers(self) -> list[BreakerStatus]:
        return [
            BreakerStatus(name, state, 0.0, 0.0, 0, None, 1, 0, 0)
            for name, state in self.states.items()
        ]


@dataclass
class Alerts:
    open: list[AlertState] = field(default_factory=list)

    def open_alerts(self) -> list[AlertState]:
        return list(self.open)


NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC).timestamp()


@dataclass
class Epochs:
    """The fleet epoch as a test sets it."""

    state: EpochState = field(default_factory=lambda: EpochState(Epoch("e1", NOW - 3600), None))

    def read(self) -> EpochState:
        return self.state


@pytest.fixture
def dead_letters(client: redis.Redis, keys: KeySpace) -> DeadLetterStore:
    return DeadLetterStore(client, keys)


def monitor(
    dead_letters: DeadLetterStore,
    signals: Signals | None = None,
    breakers: Breakers | None = None,
    alerts: Alerts | None = None,
    epochs: Epochs | None = None,
) -> HealthMonitor:
    return HealthMonitor(
        signals or Signals(),
        breakers or Breakers({"broker.orders": BreakerState.CLOSED}),
        dead_letters,
        alerts or Alerts(),
        epochs=epochs or Epochs(),
        clock=ManualClock(NOW),
    )


def test_a_quiet_fleet_is_healthy_and_says_so(dead_letters: DeadLetterStore) -> None:
    signals = Signals()
    report = monitor(dead_letters, signals).report()
    assert report.status is HealthStatus.HEALTHY
    assert report.status.exit_code == 0
    assert report.reasons == ()
    assert report.checked_at == "2026-11-30T15:00:00+00:00"
    assert sorted(signals.asked) == [("critical", 300.0), ("rate", 300.0)]
    document = report.to_dict()
    assert document["status"] == "healthy"
    assert [c["name"] for c in document["checks"]] == [
        "redis_data",
        "critical_errors",
        "error_rate",
        "recovery",
        "breaker:broker.orders",
        "dead_letters",
    ]


@pytest.mark.parametrize(
    ("signals", "status", "reason"),
    [
        (Signals(critical=1), HealthStatus.CRITICAL, "1 critical error(s) in the last 5 min"),
        (Signals(rate=1.0), HealthStatus.WARNING, "1.00 errors/min over the last 5 min"),
        (Signals(rate=0.99), HealthStatus.HEALTHY, None),
        (
            Signals(finished=Recovery(recovered=5, dead=5)),
            HealthStatus.CRITICAL,
            "50% of failed tasks died (5 of 10)",
        ),
        (Signals(finished=Recovery(recovered=6, dead=5)), HealthStatus.HEALTHY, None),
        # Nine dead tasks of nine finished say nothing yet (the thresholds' 10 outcomes).
        (Signals(finished=Recovery(dead=9)), HealthStatus.HEALTHY, None),
    ],
)
def test_error_rules_at_their_boundaries(
    dead_letters: DeadLetterStore, signals: Signals, status: HealthStatus, reason: str | None
) -> None:
    report = monitor(dead_letters, signals).report()
    assert report.status is status
    assert report.reasons == (() if reason is None else (reason,))


@pytest.mark.parametrize(
    ("state", "status"),
    [
        (BreakerState.CLOSED, HealthStatus.HEALTHY),
        (BreakerState.HALF_OPEN, HealthStatus.WARNING),
        (BreakerState.DISABLED, HealthStatus.WARNING),
        (BreakerState.OPEN, HealthStatus.CRITICAL),
        (BreakerState.FORCED_OPEN, HealthStatus.CRITICAL),
    ],
)
def test_each_breaker_state_counts(
    dead_letters: DeadLetterStore, state: BreakerState, status: HealthStatus
) -> None:
    breakers = Breakers({"broker.orders": state, "broker.data": BreakerState.CLOSED})
    report = monitor(dead_letters, breakers=breakers).report()
    assert report.status is status
    assert report.summary["breakers_open"] == (
        state in (BreakerState.OPEN, BreakerState.FORCED_OPEN)
    )


def test_recent_dead_letters_warn_and_old_ones_only_wait(dead_letters: DeadLetterStore) -> None:
    """A dead letter 10 minutes old makes a warning; 20 minutes old it is only counted as
    awaiting an operator; one replaying is not awaiting."""

    def at(minutes_ago: float) -> str:
        return datetime.fromtimestamp(NOW - minutes_ago * 60, UTC).isoformat()

    dead_letters.add(dead_order("dl-old", dead_at=at(20)))
    report = monitor(dead_letters).report()
    assert (report.status, report.dlq) == (HealthStatus.HEALTHY, {"awaiting": 1, "recent": 0})
    dead_letters.add(dead_order("dl-new", dead_at=at(10)))
    dead_letters.transition(
        "dl-old", expected="dead", new="replaying", actor="test", action="replay"
    )
    report = monitor(dead_letters).report()
    assert (report.status, report.dlq) == (HealthStatus.WARNING, {"awaiting": 1, "recent": 1})
    assert report.reasons == ("1 task(s) dead-lettered in the last 15 min",)


def test_the_worst_check_wins_and_reasons_come_worst_first(
    dead_letters: DeadLetterStore,
) -> None:
    report = monitor(
        dead_letters,
        Signals(rate=3.0, critical=2),
        Breakers({"broker.orders": BreakerState.HALF_OPEN}),
    ).report()
    assert report.status is HealthStatus.CRITICAL
    assert report.status.exit_code == 2
    assert report.reasons[0] == "2 critical error(s) in the last 5 min"
    assert set(report.reasons[1:]) == {
        "3.00 errors/min over the last 5 min",
        "breaker broker.orders half open: probing the API",
    }


def test_recommendations_follow_the_error_classes_present() -> None:
    """A subclass takes its nearest listed ancestor's advice; each advice once, the most
    errors first; an open breaker's advice first of all; unknown types get none."""
    counts = {
        "InsufficientFundsError:trading": 2,
        "PositionValidationError:trading": 5,  # -> TradingClientError
        "MarketDataError:market_data": 1,
        "SomethingForeign:trading": 9,
    }
    closed = [BreakerStatus("broker.orders", BreakerState.CLOSED, 0, 0, 0, None, 1, 0, 0)]
    assert recommendations_for(counts, closed, advice_by_class=TRADING_ADVICE) == (
        TRADING_ADVICE["TradingClientError"],
        TRADING_ADVICE["InsufficientFundsError"],
        TRADING_ADVICE["MarketDataError"],
    )
    # Without the application's advice only the generic classes are advised on: a
    # TradingClientError takes nothing (its nearest listed ancestor is none).
    assert recommendations_for(counts, closed) == ()
    opened = [BreakerStatus("broker.orders", BreakerState.OPEN, 60, 0, 20, None, 2, 0, 1)]
    advice = recommendations_for({}, opened)
    assert len(advice) == 1 and advice[0].startswith("A breaker refuses every call")


def test_the_rules_follow_the_alert_thresholds(dead_letters: DeadLetterStore) -> None:
    """Health and the alerts judge by the same numbers: a stricter error rate in the
    thresholds makes 0.5 errors/min a warning here too."""
    signals = Signals(rate=0.5)
    relaxed = monitor(dead_letters, signals).report()
    strict = HealthMonitor(
        signals,
        Breakers(),
        dead_letters,
        Alerts(),
        epochs=Epochs(),
        clock=ManualClock(NOW),
        thresholds=StaticThresholds(error_rate_per_min=0.5),
    ).report()
    assert (relaxed.status, strict.status) == (HealthStatus.HEALTHY, HealthStatus.WARNING)


def test_a_redis_that_lost_its_data_is_critical_first_of_all(
    dead_letters: DeadLetterStore,
) -> None:
    """The loss a worker recorded makes the fleet critical with its message, and its advice
    comes before any other."""
    loss = DataLoss("e1", "e2", LossCause.RESTARTED, NOW - 120, NOW - 60, restarted_at=NOW - 90)
    epochs = Epochs(EpochState(Epoch("e2", NOW - 60), loss))
    signals = Signals(counts={"RateLimitError:trading": 3})
    found = monitor(dead_letters, signals, epochs=epochs).report()
    assert (found.status, found.status.exit_code) == (HealthStatus.CRITICAL, 2)
    assert found.reasons == (
        "Redis lost its data at 2026-11-30T14:58:30+00:00 (epoch e1 gone; Redis restarted:"
        " run_id changed): dead letters, breaker state, alerts and the application's data"
        " written before then are gone; check Redis persistence (AOF)",
    )
    assert found.recommendations[0].startswith("Redis came back without its data")
    assert len(found.recommendations) == 2


@pytest.mark.parametrize(
    ("state", "says"),
    [
        (EpochState(None, None), "no fleet epoch yet: no worker has started"),
        (
            EpochState(Epoch("e1", NOW - 3600), None),
            "epoch e1 kept since 2026-11-30T14:00:00+00:00",
        ),
    ],
)
def test_a_new_namespace_and_a_kept_epoch_are_healthy(
    dead_letters: DeadLetterStore, state: EpochState, says: str
) -> None:
    report = monitor(dead_letters, epochs=Epochs(state)).report()
    assert report.status is HealthStatus.HEALTHY
    assert report.checks[0].message == says
