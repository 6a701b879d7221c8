"""What a task's final failure leaves behind: a dead letter (unless an earlier attempt did the
work after all), a report to the error trackers, and an escalation.

Functions of a :class:`FailingTask` (a ``ResilientTask``) and its :class:`Delivery`.
"""

from __future__ import annotations

import traceback
from typing import Any, Protocol

import structlog
from celery import Celery
from celery.exceptions import Reject

from resilience.deadletter.store import DeadLetter, bound_value
from resilience.delivery import HEADER, MESSAGE_LIMIT, Delivery, DeliveryState, iso
from resilience.errors import AlchemiserError
from resilience.guard.admission import Admission
from resilience.observability.reporting import FailureAction, FailureReport, report_to
from resilience.policy.handler import notification_data
from resilience.policy.resolver import Action, Decision
from resilience.recovery.result import RecoveryResult

__all__ = ["FailingTask", "SettledElsewhere", "dead_letter", "report"]

_log = structlog.get_logger("alchemiser.task")


class SettledElsewhere(Exception):  # noqa: N818 - a signal, not an error
    """Raised instead of writing a dead letter when an earlier attempt already did the task's
    work; the task returns ``result`` as its success."""

    def __init__(self, result: Any) -> None:
        super().__init__("settled elsewhere")
        self.result = result


class FailingTask(Protocol):
    """What the failure path reads of a task (a ``ResilientTask``)."""

    @property
    def name(self) -> str: ...
    @property
    def component(self) -> str: ...
    @property
    def resources(self) -> tuple[str, ...]: ...
    @property
    def escalates(self) -> bool: ...
    @property
    def app(self) -> Celery: ...
    @property
    def admission(self) -> Admission | None: ...

    def idempotency_key_of(self, kwargs: dict[str, Any]) -> str | None: ...

    def settled_elsewhere(self, kwargs: dict[str, Any], state: DeliveryState) -> Any | None: ...

    def handle(self, delivery: Delivery, exc: BaseException) -> Any: ...


def dead_letter(
    task: FailingTask,
    delivery: Delivery,
    error: AlchemiserError,
    *,
    state: DeliveryState,
    reason: str,
    cause: BaseException | None,
    counted: bool,
) -> None:
    """Write the dead letter, count it, report and escalate it. ``counted``: whether the
    error handler has counted ``error`` already (a failure of the body); one dead-lettered
    before the body ran is counted here, so every dead letter is one handled error.

    Raises :class:`SettledElsewhere` instead if the task's ``settled_elsewhere`` finds the work
    done, so the dead letters list only tasks that did not happen; ``Reject(requeue=True)`` if
    the store cannot take it (acking would lose the task)."""
    runtime = delivery.runtime
    _settle_elsewhere(task, delivery, error, state)
    entry = _entry(task, delivery, error, state=state, reason=reason, cause=cause)
    try:
        evicted = runtime.dead_letters.add(entry)
    except Exception as store_failure:
        _log.critical("dead_letter_write_failed", task_id=entry.id, error=repr(store_failure))
        raise Reject(str(store_failure), requeue=True) from store_failure
    if evicted:
        _log.warning("dead_letters_evicted", count=len(evicted), ids=evicted[:10])
    runtime.outcomes.incr("dead_lettered", task.name)
    if runtime.resolutions is not None:
        runtime.resolutions.record({error.error_type: "dead_lettered"})
    if not counted:
        task.handle(delivery, error)
    _log.error(
        "task_dead_lettered",
        task=task.name,
        task_id=entry.id,
        error_type=entry.error_type,
        reason=reason,
        attempts=len(entry.attempts),
        idempotency_key=entry.idempotency_key,
    )
    report(
        task, delivery, "dead_letter", error, state=state, reason=reason, cause=cause, entry=entry
    )
    if task.escalates and error.policy.escalate:
        _escalate(task, delivery, error, entry, reason)


def _entry(
    task: FailingTask,
    delivery: Delivery,
    error: AlchemiserError,
    *,
    state: DeliveryState,
    reason: str,
    cause: BaseException | None,
) -> DeadLetter:
    scrub = delivery.runtime.scrubber
    now_s = delivery.runtime.clock.now_s()
    history = list(state.history)
    if not history or history[-1].get("error_type") != error.error_type:
        last = Decision(Action.DEAD_LETTER, 0.0, reason)
        history.append(delivery.attempt_record(error, last, now_s, state))
    tb = "".join(traceback.format_exception(cause)) if cause is not None else None
    return DeadLetter(
        id=delivery.task_id,
        task=task.name,
        queue=delivery.queue,
        args=bound_value(scrub(list(delivery.args))),
        kwargs=bound_value(scrub(delivery.kwargs)),
        headers=scrub({HEADER: state.to_header()}),
        idempotency_key=bound_value(task.idempotency_key_of(delivery.kwargs), 128),
        error_type=error.error_type,
        message=scrub.text(error.message)[:MESSAGE_LIMIT],
        reason=reason,
        severity=error.severity.value,
        traceback=scrub.text(tb) if tb else None,
        context=scrub(
            {
                "component": task.component,
                "operation": task.name,
                "error_id": error.error_id,
                "error_context": error.context.to_dict() if error.context else None,
                "details": error.details,
            }
        ),
        attempts=[dict(record) for record in history],
        hostname=delivery.hostname,
        dead_at=iso(now_s),
        replay_of=state.replay_of,
    )


def _settle_elsewhere(
    task: FailingTask, delivery: Delivery, error: AlchemiserError, state: DeliveryState
) -> None:
    """Raise :class:`SettledElsewhere` if an earlier attempt already did the work."""
    runtime = delivery.runtime
    try:
        result = task.settled_elsewhere(delivery.kwargs, state)
    except Exception as lookup_failure:  # cannot tell: the dead letter is the safe answer
        _log.warning(
            "settlement_lookup_failed",
            task=task.name,
            task_id=delivery.task_id,
            error_type=error.error_type,
            error=runtime.scrubber.text(repr(lookup_failure))[:MESSAGE_LIMIT],
        )
        return
    if result is None:
        return
    _log.info(
        "task_settled_elsewhere",
        task=task.name,
        task_id=delivery.task_id,
        error_type=error.error_type,
    )
    runtime.outcomes.incr("recovered", task.name)
    if runtime.metrics is not None:
        runtime.metrics.record_recovered(state.failures)
    if runtime.resolutions is not None:
        runtime.resolutions.record({error.error_type: "settled_elsewhere"})
    raise SettledElsewhere(result)


def report(
    task: FailingTask,
    delivery: Delivery,
    action: FailureAction,
    error: AlchemiserError,
    *,
    state: DeliveryState,
    reason: str,
    cause: BaseException | None = None,
    countdown_s: float = 0.0,
    entry: DeadLetter | None = None,
    recovery: tuple[RecoveryResult, ...] = (),
) -> None:
    """Tell the runtime's reporters (an error tracker) of this failure and of what the
    recovery strategies did about it."""
    reporters = delivery.runtime.reporters
    if not reporters:
        return
    # A dead letter's state already counts its last failure: its history says how many of the
    # attempts before it were retried.
    retries = state.failures
    if entry is not None:
        retries = sum(attempt.get("action") == Action.RETRY.value for attempt in entry.attempts)
    report_to(
        reporters,
        FailureReport(
            action=action,
            error=error,
            cause=cause,
            task_name=task.name,
            task_id=delivery.task_id,
            component=task.component,
            reason=reason,
            retry_count=retries,
            resources=task.resources,
            admission=task.admission,
            countdown_s=countdown_s,
            dead_letter_id=entry.id if entry else None,
            idempotency_key=entry.idempotency_key if entry else None,
            attempts=tuple(entry.attempts) if entry else (),
            recovery=tuple(r.to_record() for r in recovery),
        ),
    )


def _escalate(
    task: FailingTask,
    delivery: Delivery,
    error: AlchemiserError,
    entry: DeadLetter,
    reason: str,
) -> None:
    runtime = delivery.runtime
    if runtime.escalation_task is None:
        return
    data = notification_data(
        error,
        component=task.component,
        operation=task.name,
        task_name=task.name,
        scrub=runtime.scrubber,
        dead_letter_id=entry.id,
        idempotency_key=entry.idempotency_key,
        attempts=len(entry.attempts),
        reason=reason,
    )
    try:
        task.app.send_task(runtime.escalation_task, kwargs={"notification": data})
    except Exception as publish_failure:  # the dead letter is stored; the alert is best effort
        _log.error("escalation_publish_failed", task_id=entry.id, error=repr(publish_failure))
