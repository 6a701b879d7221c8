"""Recovery as a step of a failing :class:`~resilience.task.ResilientTask`'s delivery: try the
registered strategies, finish the task with a recovered value, or run it again later."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from resilience.delivery import Delivery, DeliveryState
from resilience.errors import AlchemiserError
from resilience.failure import SettledElsewhere, report
from resilience.policy.resolver import Action, Decision
from resilience.recovery.registry import RecoveryRegistry
from resilience.recovery.result import RecoveryResult
from resilience.recovery.runner import run_recovery
from resilience.recovery.strategy import RecoveryAttempt
from resilience.runtime import ResilienceRuntime

if TYPE_CHECKING:
    from resilience.task import ResilientTask

__all__ = ["finish_recovered", "record_success_after", "recovery_deferral", "try_recovery"]


def try_recovery(
    task: ResilientTask,
    registry: RecoveryRegistry,
    delivery: Delivery,
    exc: Exception,
    error: AlchemiserError,
    *,
    now_s: float,
    budget_paid: bool,
) -> tuple[RecoveryResult, ...]:
    """The registered strategies' results for this failed attempt."""
    attempt = RecoveryAttempt(
        task=task,
        kwargs=dict(delivery.kwargs),
        error=error,
        cause=exc,
        failures=delivery.state.failures,
        recoveries=delivery.state.recoveries,
        now_s=now_s,
        deadline_s=delivery.deadline,
    )
    runtime = delivery.runtime
    return run_recovery(
        registry,
        attempt,
        budget_paid=budget_paid,
        counter=runtime.metrics,
        scrubber=runtime.scrubber,
    )


def finish_recovered(
    task: ResilientTask,
    delivery: Delivery,
    error: AlchemiserError,
    recovered: RecoveryResult,
    results: tuple[RecoveryResult, ...],
) -> NoReturn:
    """A strategy did the task's work: the task succeeds with its value (counted as recovered
    after this attempt's failure, reported to the error trackers)."""
    runtime, state = delivery.runtime, delivery.state
    runtime.outcomes.incr("recovered", task.name)
    if runtime.metrics is not None:
        runtime.metrics.record_recovered(state.failures + 1)
    if runtime.resolutions is not None:
        runtime.resolutions.record({error.error_type: f"recovered:{recovered.strategy}"})
    report(
        task, delivery, "recovered", error,
        state=state, reason=f"recovered by {recovered.strategy}: {recovered.action}",
        recovery=results,
    )  # fmt: skip
    raise SettledElsewhere(recovered.value)


def recovery_deferral(delivery: Delivery, wait_s: float, now_s: float) -> Decision:
    """Run again after ``wait_s`` without spending an attempt, if the deadline allows."""
    deadline = delivery.deadline
    if deadline is not None and now_s + wait_s > deadline:
        return Decision(Action.DEAD_LETTER, 0.0, "deadline passes before it may run again")
    return Decision(
        Action.DEFER, min(wait_s, delivery.runtime.max_countdown_s), "recovered: run again"
    )


def record_success_after(runtime: ResilienceRuntime, state: DeliveryState) -> None:
    """A task that failed before succeeded: for each error type of its history, what worked
    (the recovery strategy that made it wait, else succeeding at this attempt)."""
    if runtime.resolutions is None:
        return
    endings: dict[str, str] = {}
    for record in state.history:
        error_type = record.get("error_type")
        if not error_type:
            continue
        endings.setdefault(error_type, f"succeeded_at:{state.failures + 1}")
        for result in record.get("recovery", ()):
            if result.get("outcome") == "recovered":
                endings[error_type] = f"recovered:{result.get('strategy')}"
    runtime.resolutions.record(endings)
