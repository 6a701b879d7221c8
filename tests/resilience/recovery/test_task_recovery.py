"""Recovery as a step of ResilientTask's failure path, unit level: the task is called with a
pushed request as a worker would, on the real test Redis with time injected (ManualClock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from celery import Celery
from celery.canvas import Signature
from celery.exceptions import Retry

from resilience.deadletter.store import DeadLetterStore
from resilience.errors import (
    InsufficientFundsError,
    RateLimitError,
    TradingClientError,
)
from resilience.guard.admission import Guard, Outcome
from resilience.guard.resources import RateLimitConfig, ResourceConfig, RetryBudgetConfig
from resilience.observability.metrics import ErrorMetrics
from resilience.observability.outcomes import OutcomeCounter
from resilience.observability.reporting import FailureReport
from resilience.policy.classify import default_classifier
from resilience.policy.handler import ErrorHandler
from resilience.recovery.rate_limit import LimiterSlotRecovery
from resilience.recovery.registry import RecoveryRegistry
from resilience.recovery.result import RecoveryResult
from resilience.recovery.strategy import RecoveryAttempt
from resilience.scrub import Scrubber
from resilience.storage.clock import ManualClock
from resilience.storage.keys import KeySpace
from resilience.task import RUNTIME_SETTING, DeliveryState, ResilienceRuntime, ResilientTask
from tests.builders import deliver_as_worker

TASK_ID = "task-r"
SECRET = "sk-live-recovery-secret"


@dataclass
class Strategy:
    """Answers with ``answer``; remembers each attempt it saw."""

    name: str
    answer: RecoveryResult
    seen: list[RecoveryAttempt] = field(default_factory=list)

    def recover(self, attempt: RecoveryAttempt) -> RecoveryResult:
        self.seen.append(attempt)
        return self.answer


@dataclass
class Harness:
    client: redis.Redis
    keys: KeySpace
    clock: ManualClock
    app: Celery
    registry: RecoveryRegistry = field(default_factory=RecoveryRegistry)
    retries: list[dict[str, Any]] = field(default_factory=list)
    reports: list[FailureReport] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.install(guard=None)

    def install(self, guard: Guard | None) -> None:
        scrubber = Scrubber([SECRET])
        self.metrics = ErrorMetrics(self.client, self.keys, self.clock, scrubber=scrubber)
        runtime = ResilienceRuntime(
            redis=self.client,
            keys=self.keys,
            dead_letters=DeadLetterStore(self.client, self.keys),
            handler=ErrorHandler(classifier=default_classifier(), scrubber=scrubber),
            scrubber=scrubber,
            outcomes=OutcomeCounter(self.client, self.keys),
            clock=self.clock,
            max_countdown_s=600.0,
            guard=guard,
            metrics=self.metrics,
            escalation_task=None,
            reporters=(self,),
            recovery=self.registry,
        )
        self.app.conf[RUNTIME_SETTING] = lambda: runtime

    def report(self, report: FailureReport) -> None:
        self.reports.append(report)

    def failing_task(
        self, error: Exception, *, resources: tuple[str, ...] = (), name: str = "unit.recovering"
    ) -> ResilientTask:
        def body(self: ResilientTask, /, **kwargs: Any) -> Any:
            raise error

        return self.app.task(  # type: ignore[no-any-return]
            bind=True, base=ResilientTask, name=name, shared=False,
            resources=resources,
        )(body)  # fmt: skip

    def retry_state(self, index: int = -1) -> DeliveryState:
        return DeliveryState.from_headers(self.retries[index]["headers"])

    def strategy_counts(self) -> dict[tuple[str, str], int]:
        return self.metrics.recovery().strategies


@pytest.fixture
def h(client: redis.Redis, keys: KeySpace, monkeypatch: pytest.MonkeyPatch) -> Harness:
    app = Celery("unit", broker="memory://", set_as_current=False)
    harness = Harness(client, keys, ManualClock(float(client.time()[0])), app)

    def capture_retry(self: Signature, *args: object, **kwargs: object) -> None:
        harness.retries.append(dict(self.options))

    monkeypatch.setattr(Signature, "apply_async", capture_retry)
    return harness


def deliver(task: ResilientTask, state: DeliveryState | None = None, **kwargs: Any) -> Any:
    """Run ``task`` as a worker would; a retry it publishes is captured by the harness."""
    try:
        return deliver_as_worker(task, task_id=TASK_ID, queue="q", state=state, **kwargs)
    except Retry:
        return None


def test_a_recovered_value_is_the_tasks_result_and_nothing_is_retried(h: Harness) -> None:
    found = Strategy("lookup", RecoveryResult.recovered("lookup", "found it", value={"id": "b-1"}))
    h.registry.register(TradingClientError, found)
    task = h.failing_task(TradingClientError("read timed out"))
    assert deliver(task, symbol="AAPL") == {"id": "b-1"}
    assert h.retries == []
    (seen,) = found.seen
    assert (seen.error.error_type, seen.failures, seen.kwargs) == (
        "TradingClientError", 0, {"symbol": "AAPL"},
    )  # fmt: skip
    assert isinstance(seen.cause, TradingClientError)
    assert h.strategy_counts() == {("lookup", "recovered"): 1}
    stats = h.metrics.recovery()
    assert (stats.recovered, stats.recovered_after) == (1, {1: 1})
    assert OutcomeCounter(h.client, h.keys).totals()["recovered"] == 1
    (reported,) = h.reports
    assert reported.action == "recovered"
    assert reported.recovery == (
        {"strategy": "lookup", "outcome": "recovered", "action": "found it"},
    )


def test_a_recovery_that_runs_again_later_spends_no_attempt_and_is_bounded(h: Harness) -> None:
    wait = Strategy(
        "limiter-slot", RecoveryResult.recovered("limiter-slot", "wait", retry_in_s=7.5)
    )
    h.registry = RecoveryRegistry(max_recoveries=2)
    h.install(guard=None)
    h.registry.register(RateLimitError, wait)
    task = h.failing_task(RateLimitError("429", retry_after_s=7.5))
    state: DeliveryState | None = None
    for _ in range(2):
        deliver(task, state)
        state = h.retry_state()
        assert h.retries[-1]["countdown"] == 7.5
    assert state is not None
    assert (state.failures, state.deferrals, state.recoveries) == (0, 2, 2)
    assert [r["action"] for r in state.history] == ["defer", "defer"]
    assert state.history[0]["recovery"] == [
        {"strategy": "limiter-slot", "outcome": "recovered", "action": "wait", "retry_in_s": 7.5}
    ]
    # The third time the limit stops the recovery: the rate limit's own policy spends an attempt.
    deliver(task, state)
    third = h.retry_state()
    assert (third.failures, third.deferrals, third.recoveries) == (1, 2, 2)
    assert third.history[-1]["action"] == "retry"
    assert third.history[-1]["recovery"][0]["strategy"] == "recovery_limit"
    assert len(wait.seen) == 2
    assert h.strategy_counts() == {
        ("limiter-slot", "recovered"): 2,
        ("recovery_limit", "gave_up"): 1,
    }


def test_a_recovery_past_the_deadline_is_a_dead_letter(h: Harness) -> None:
    h.registry.register(
        RateLimitError, Strategy("slot", RecoveryResult.recovered("slot", "wait", retry_in_s=60.0))
    )

    class Deadline(ResilientTask):
        def deadline_s(self, kwargs: dict[str, Any]) -> float | None:
            return float(kwargs["until"])

    def body(self: ResilientTask, /, **kwargs: Any) -> Any:
        raise RateLimitError("429")

    task = h.app.task(bind=True, base=Deadline, name="unit.deadline", shared=False)(body)
    with pytest.raises(RateLimitError):
        deliver(task, until=h.clock.now_s() + 30.0)
    entry = DeadLetterStore(h.client, h.keys).get(TASK_ID)
    assert entry is not None
    assert entry.reason == "deadline passes before it may run again"
    assert entry.attempts[-1]["recovery"][0]["strategy"] == "slot"


def test_what_gave_up_is_in_the_dead_letters_history_scrubbed(h: Harness) -> None:
    h.registry.register(
        InsufficientFundsError,
        Strategy("resize", RecoveryResult.gave_up("resize", f"account {SECRET} has no cash")),
    )
    task = h.failing_task(InsufficientFundsError("insufficient buying power"))
    with pytest.raises(InsufficientFundsError):
        deliver(task)
    entry = DeadLetterStore(h.client, h.keys).get(TASK_ID)
    assert entry is not None and entry.reason == "not retryable"
    (record,) = entry.attempts[-1]["recovery"]
    assert record["outcome"] == "gave_up"
    assert SECRET not in record["action"] and "account" in record["action"]
    assert h.reports[-1].action == "dead_letter"
    assert h.strategy_counts() == {("resize", "gave_up"): 1}


def test_no_strategy_for_the_error_leaves_the_failure_path_as_it_was(h: Harness) -> None:
    h.registry.register(
        RateLimitError, Strategy("slot", RecoveryResult.recovered("slot", "w", retry_in_s=1.0))
    )
    task = h.failing_task(TradingClientError("read timed out"))
    deliver(task)
    state = h.retry_state()
    assert (state.failures, state.deferrals, state.recoveries) == (1, 0, 0)
    assert "recovery" not in state.history[-1]
    assert h.strategy_counts() == {}


def test_a_recovery_the_retry_budget_cannot_pay_for_is_not_tried(h: Harness) -> None:
    budget = RetryBudgetConfig(capacity=10, retry_cost=10, timeout_cost=10, refill_per_s=0)
    guard = Guard(h.client, h.keys, {"api": ResourceConfig("api", retry_budget=budget)})
    spent = guard.admit(["api"])
    assert guard.record(spent, Outcome.FAILED, retry="retry").retry_allowed
    h.install(guard=guard)
    lookup = Strategy("lookup", RecoveryResult.recovered("lookup", "found", value=1))
    h.registry.register(TradingClientError, lookup)
    task = h.failing_task(TradingClientError("read timed out"), resources=("api",))
    with pytest.raises(TradingClientError):
        deliver(task)
    assert lookup.seen == []
    entry = DeadLetterStore(h.client, h.keys).get(TASK_ID)
    assert entry is not None and entry.reason == "retry budget exhausted"
    assert entry.attempts[-1]["recovery"] == [
        {"strategy": "retry_budget", "outcome": "gave_up", "action": "retry budget exhausted"}
    ]


def test_a_rate_limit_waits_for_the_shared_limiters_next_slot_spending_no_attempt(
    h: Harness,
) -> None:
    """One run per 10 s is admitted; the API still says 429, Retry-After 2 s: the task comes
    back at the limiter's next slot (about 10 s, later than the Retry-After), as a deferral."""
    limited = ResourceConfig("api", rate_limit=RateLimitConfig(rate=1, period_s=10.0))
    h.install(guard=Guard(h.client, h.keys, {"api": limited}))
    h.registry.register(RateLimitError, LimiterSlotRecovery())
    task = h.failing_task(RateLimitError("429", retry_after_s=2.0), resources=("api",))
    deliver(task)
    state = h.retry_state()
    assert (state.failures, state.deferrals, state.recoveries) == (0, 1, 1)
    assert 9.0 < h.retries[-1]["countdown"] <= 10.0
    (record,) = state.history[-1]["recovery"]
    assert record["strategy"] == "limiter_slot"
    assert record["details"]["retry_after_s"] == 2.0
    assert 9.0 < record["details"]["limiter_wait_s"]["api"] <= 10.0
    assert "the shared limiter's next slot; no attempt spent" in record["action"]


def test_without_a_limiter_a_rate_limit_waits_for_the_retry_after(h: Harness) -> None:
    h.registry.register(RateLimitError, LimiterSlotRecovery())
    deliver(h.failing_task(RateLimitError("429", retry_after_s=4.0)))
    assert h.retries[-1]["countdown"] == 4.0
    deliver(h.failing_task(RateLimitError("429"), name="unit.no-hint"))
    # No hint at all: it still waits, it cannot spin.
    assert h.retries[-1]["countdown"] == 1.0
    assert h.retry_state().failures == 0
