"""ResilientTask: the Celery base class that applies the error hierarchy to every task.

Per delivery it (1) quarantines a message redelivered too often (a poison task that kills its
worker), (2) refuses to run past the task's deadline, (3) asks the fleet's guard to admit the
run, (4) runs the body, and on an exception (5) classifies it once, (6) asks the resolver what
follows, and (7) retries, defers, or writes the dead letter and publishes the escalation
(:mod:`resilience.failure`). A task that succeeds first time costs no Redis call beyond its
admission.

Services (Redis, stores, classifier, clock) come from a runtime the application puts in
``app.conf[RUNTIME_SETTING]`` (:mod:`resilience.runtime`): this package knows nothing of the app
that uses it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar, NoReturn

import structlog
from celery import Task
from celery.exceptions import Ignore, Reject, Retry
from redis.exceptions import RedisError

from resilience.delivery import HEADER, Delivery, DeliveryState, iso
from resilience.errors import (
    AdmissionRefusedError,
    AlchemiserError,
    CircuitBreakerOpenError,
    PoisonMessageError,
    RateLimitError,
    StaleOrderError,
)
from resilience.failure import SettledElsewhere, dead_letter, report
from resilience.guard.admission import Admission, Outcome, RetryKind
from resilience.policy.classify import Component, is_timeout
from resilience.policy.context import ErrorContext
from resilience.policy.handler import ErrorDetails
from resilience.policy.resolver import Action, Decision, decide
from resilience.recovery.result import RecoveryResult
from resilience.recovery.runner import recovered_by
from resilience.recovery.task_step import (
    finish_recovered,
    record_success_after,
    recovery_deferral,
    try_recovery,
)
from resilience.runtime import RUNTIME_SETTING, ResilienceRuntime

__all__ = ["HEADER", "RUNTIME_SETTING", "DeliveryState", "ResilienceRuntime", "ResilientTask"]

REDELIVERY_KEY_TTL_S = 7 * 24 * 3600
# A refused run comes back after the resource's retry-after plus up to this share of it.
ADMISSION_JITTER = 0.5

_log = structlog.get_logger("alchemiser.task")

# Where a delivery's parsed header and its run are kept on Celery's request context.
_STATE_ATTRIBUTE = "alchemiser_delivery_state"
_DELIVERY_ATTRIBUTE = "alchemiser_delivery"


class ResilientTask(Task):  # type: ignore[type-arg]
    """Base class of every Alchemiser task (``@app.task(base=ResilientTask)``)."""

    acks_late = True
    reject_on_worker_lost = True
    # Celery's own retry ceiling is off: the error class's policy decides.
    max_retries = None
    # Which part of the application the task belongs to: its error families (the classifier's
    # domain) and its metrics' label.
    component: ClassVar[Component] = "default"
    escalates: ClassVar[bool] = True
    # Guarded resources (resilience.guard.resources) every run must be admitted to.
    resources: ClassVar[tuple[str, ...]] = ()

    # Hooks for subclasses: the application's view of a task's payload.
    def prepare_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Normalise kwargs before the first run (fill derived ids, default deadlines)."""
        return kwargs

    def deadline_s(self, kwargs: dict[str, Any]) -> float | None:
        """Unix time after which the task must not run, if any."""
        return None

    def settled_elsewhere(self, kwargs: dict[str, Any], state: DeliveryState) -> Any | None:
        """Asked before a dead letter is written: the task's result if an earlier attempt
        (``state`` counts the failures so far) already did its work, as an order booked whose
        reply was lost; ``None`` if it did not. An exception here is logged and the task is
        dead-lettered as it would have been."""
        return None

    def idempotency_key_of(self, kwargs: dict[str, Any]) -> str | None:
        """The key that makes the task's effect happen once (an order's client order id), kept
        with its dead letter so an operator can look the effect up; ``None`` if it has none."""
        return None

    def delivery_state(self) -> DeliveryState:
        """What this delivery's ``alchemiser`` header says, read once per delivery (a malformed
        header is logged once, however often the task asks)."""
        request = self.request
        state: DeliveryState | None = getattr(request, _STATE_ATTRIBUTE, None)
        if state is None:
            state = DeliveryState.from_headers(request.headers)
            setattr(request, _STATE_ATTRIBUTE, state)
        return state

    def classify(self, exc: BaseException) -> AlchemiserError:
        """``exc`` in the hierarchy, for this task's component. A body that classifies a failure
        to decide what to do and then lets it fail is not classified a second time."""
        delivery: Delivery | None = getattr(self.request, _DELIVERY_ATTRIBUTE, None)
        if delivery is not None and delivery.classified is not None:
            seen, error = delivery.classified
            if seen is exc:
                return error
        error = self.runtime.handler.classifier.classify(exc, component=self.component)
        if delivery is not None:
            delivery.classified = (exc, error)
        return error

    @property
    def admission(self) -> Admission | None:
        """How the running task was admitted to its resources (None if it declares none)."""
        admission: Admission | None = getattr(self.request, "admission", None)
        return admission

    @property
    def runtime(self) -> ResilienceRuntime:
        """This process's services (built lazily by the application's provider)."""
        provider: Callable[[], ResilienceRuntime] = self.app.conf[RUNTIME_SETTING]
        return provider()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly:
            return super().__call__(*args, **kwargs)
        delivery_info = request.delivery_info or {}
        delivery = Delivery(
            runtime=self.runtime,
            task_id=str(request.id),
            hostname=str(request.hostname or ""),
            queue=delivery_info.get("routing_key"),
            args=args,
            kwargs=kwargs,
            state=self.delivery_state(),
            redelivered=bool(delivery_info.get("redelivered")),
        )
        setattr(request, _DELIVERY_ATTRIBUTE, delivery)
        try:
            return self._deliver(delivery)
        except SettledElsewhere as settled:
            return settled.result

    def _deliver(self, delivery: Delivery) -> Any:
        """One delivery: quarantine, deadline, admission, the body and its failure handling."""
        runtime, state = delivery.runtime, delivery.state
        if delivery.redelivered:
            redeliveries = self._count_redelivery(delivery)
            if redeliveries > runtime.max_redeliveries:
                poison = PoisonMessageError(
                    f"the task was redelivered {redeliveries} times (its worker process died"
                    f" while running it); quarantined after {runtime.max_redeliveries}"
                )
                self._dead_letter_before_run(delivery, poison, "poison message")
        # A replay's first delivery, counted once however it ends (its retries, deferrals and
        # redeliveries carry the same replay_of); a replay the publisher lost is not counted.
        first_of_replay = not (state.failures or state.deferrals or delivery.redelivered)
        if state.replay_of and first_of_replay and runtime.metrics is not None:
            runtime.metrics.record_replayed()
        delivery.kwargs = self.prepare_kwargs(dict(delivery.kwargs))
        delivery.deadline = self.deadline_s(delivery.kwargs)
        if delivery.deadline is not None and runtime.clock.now_s() > delivery.deadline:
            stale = StaleOrderError(
                f"deadline {iso(delivery.deadline)} passed before the task could run"
            )
            self._dead_letter_before_run(delivery, stale, "deadline passed")
        delivery.admission = self._admit(delivery)
        delivery.started = time.perf_counter()
        try:
            result = self.run(*delivery.args, **delivery.kwargs)
        except (Retry, Ignore, Reject):
            self._record(delivery, Outcome.NONE)
            raise
        except Exception as exc:
            self._on_failure(delivery, exc)
        self._record(delivery, Outcome.OK)
        # A task that ran again after a recovery's wait failed before, though no attempt was spent.
        if state.failures or state.recoveries or delivery.redelivered:
            runtime.outcomes.incr("recovered", self.name)
            if runtime.metrics is not None:
                runtime.metrics.record_recovered(state.failures)
            record_success_after(runtime, state)
        return result

    def _dead_letter_before_run(
        self, delivery: Delivery, error: AlchemiserError, reason: str
    ) -> NoReturn:
        dead_letter(
            self, delivery, error, state=delivery.state, reason=reason, cause=None, counted=False
        )
        raise Ignore()

    def _admit(self, delivery: Delivery) -> Admission | None:
        """Ask the declared resources to admit this run; defer it (no attempt spent) if not."""
        runtime, state = delivery.runtime, delivery.state
        guard = runtime.guard
        if guard is None or not self.resources:
            return None
        admission = guard.admit(self.resources, ticket=f"{delivery.task_id}:{state.delivery}")
        if admission.admitted:
            # The body may read it (e.g. to tell an API when the call was admitted).
            self.request.update(admission=admission)
            return admission
        error_class = (
            CircuitBreakerOpenError
            if admission.reason.startswith("breaker")
            else AdmissionRefusedError
        )
        now_s = runtime.clock.now_s()
        deadline = delivery.deadline
        # Spread the deferred runs so they do not all come back at the same instant, but never
        # so far that a run which could still meet its deadline misses it.
        wait_s = admission.retry_after_s * (1.0 + runtime.rng.uniform(0.0, ADMISSION_JITTER))
        if deadline is not None and admission.retry_after_s <= deadline - now_s:
            wait_s = min(wait_s, deadline - now_s)
        refused = error_class(
            f"{admission.refused_by}: {admission.reason}",
            retry_after_s=wait_s,
            details={"resource": admission.refused_by, "reason": admission.reason},
        )
        decision = decide(
            refused,
            state.failures + 1,
            now_s=now_s,
            max_countdown_s=runtime.max_countdown_s,
            deadline_s=deadline,
        )
        if decision.action is Action.DEAD_LETTER:
            self._dead_letter_before_run(delivery, refused, decision.reason)
        _log.debug(
            "task_deferred",
            task=self.name,
            task_id=delivery.task_id,
            resource=admission.refused_by,
            reason=admission.reason,
            countdown_s=round(decision.countdown_s, 3),
        )
        record = delivery.attempt_record(refused, decision, now_s, state)
        report(
            self, delivery, "defer", refused,
            state=state, reason=decision.reason, countdown_s=decision.countdown_s,
        )  # fmt: skip
        self._schedule_retry(
            delivery, decision.countdown_s, state.after(record, deferred=True), refused
        )

    def _record(
        self,
        delivery: Delivery,
        outcome: Outcome,
        *,
        retry: RetryKind | None = None,
        push_s: float | None = None,
    ) -> bool:
        """Record the run's outcome on its resources; whether the retry budget pays a retry."""
        guard = delivery.runtime.guard
        if delivery.admission is None or guard is None:
            return True
        result = guard.record(
            delivery.admission,
            outcome,
            duration_s=time.perf_counter() - delivery.started,
            retry=retry,
            push_s=push_s,
        )
        return result.retry_allowed

    def _count_redelivery(self, delivery: Delivery) -> int:
        runtime = delivery.runtime
        key = runtime.keys.redeliveries(delivery.task_id, delivery.state.delivery)
        pipe = runtime.redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, REDELIVERY_KEY_TTL_S)
        try:
            count, _ = pipe.execute()
        except RedisError as unavailable:
            # Cannot tell how often it was redelivered: run it rather than drop it.
            _log.warning("redelivery_not_counted", task_id=key, error=str(unavailable))
            return 0
        return int(count)

    def _on_failure(self, delivery: Delivery, exc: Exception) -> NoReturn:
        runtime, state = delivery.runtime, delivery.state
        error = self.handle(delivery, exc).error
        error.retry_count = state.failures
        now_s = runtime.clock.now_s()
        decision = decide(
            error,
            state.failures + 1,
            now_s=now_s,
            max_countdown_s=runtime.max_countdown_s,
            deadline_s=delivery.deadline,
            rng=runtime.rng,
        )
        recovery = runtime.recovery
        recoverable = recovery is not None and bool(recovery.strategies_for(error, self.name))
        retry_kind: RetryKind | None = None
        # A recovery calls the remote service again: the retry budget pays for it as a retry.
        if decision.action is Action.RETRY or recoverable:
            retry_kind = "timeout" if is_timeout(exc) else "retry"
        retry_paid = self._record(
            delivery,
            Outcome.FAILED if error.policy.counts_against_breaker else Outcome.IGNORED,
            retry=retry_kind,
            push_s=error.retry_after_s if isinstance(error, RateLimitError) else None,
        )
        results: tuple[RecoveryResult, ...] = ()
        if recovery is not None and recoverable:
            results = try_recovery(
                self, recovery, delivery, exc, error, now_s=now_s, budget_paid=retry_paid
            )
        recovered = recovered_by(results)
        if recovered is not None and recovered.finishes_task:
            finish_recovered(self, delivery, error, recovered, results)
        if recovered is not None and recovered.retry_in_s is not None:
            decision = recovery_deferral(delivery, recovered.retry_in_s, now_s)
        elif not retry_paid and decision.action is not Action.DEAD_LETTER:
            decision = Decision(Action.DEAD_LETTER, 0.0, "retry budget exhausted")
        record = delivery.attempt_record(error, decision, now_s, state)
        if results:
            record["recovery"] = [runtime.scrubber(r.to_record()) for r in results]
        deferred = decision.action is Action.DEFER
        next_state = state.after(
            record, deferred=deferred, recovered=recovered is not None and deferred
        )
        _log.info(
            "task_failed",
            task=self.name,
            task_id=delivery.task_id,
            error_type=error.error_type,
            error_id=error.error_id,
            action=decision.action.value,
            countdown_s=round(decision.countdown_s, 3),
            attempt=state.failures + 1,
            reason=decision.reason,
        )
        if decision.action is Action.DEAD_LETTER:
            dead_letter(
                self, delivery, error,
                state=next_state, reason=decision.reason, cause=exc, counted=True,
            )  # fmt: skip
            raise error from exc
        runtime.outcomes.incr("deferred" if deferred else "retried", self.name)
        report(
            self, delivery, "defer" if deferred else "retry", error,
            state=state, reason=decision.reason, cause=exc, countdown_s=decision.countdown_s,
            recovery=results,
        )  # fmt: skip
        self._schedule_retry(delivery, decision.countdown_s, next_state, error)

    def handle(self, delivery: Delivery, exc: BaseException) -> ErrorDetails:
        """Classify ``exc`` (once: the body may have) and have the runtime's handler count and
        log it."""
        classified = None
        if delivery.classified is not None and delivery.classified[0] is exc:
            classified = delivery.classified[1]
        context = ErrorContext(
            operation=self.name,
            component=self.component,
            function_name=getattr(self.run, "__name__", None),
            request_id=delivery.task_id,
        )
        attempt = delivery.state.failures + 1
        return delivery.runtime.handler.handle_error(
            exc,
            context,
            self.component,
            {"task_name": self.name, "task_id": delivery.task_id, "attempt": attempt},
            classified=classified,
        )

    def _schedule_retry(
        self, delivery: Delivery, countdown_s: float, state: DeliveryState, error: AlchemiserError
    ) -> NoReturn:
        headers = {**(self.request.headers or {}), HEADER: state.to_header()}
        try:
            raise self.retry(
                args=delivery.args,
                kwargs=delivery.kwargs,
                countdown=countdown_s,
                headers=headers,
                exc=error,
            )
        except Reject as publish_failed:
            # Celery turns a failed publish of the retry into Reject(requeue=False), which
            # deletes the message on Redis: the task would be lost. Hand it back instead.
            _log.critical(
                "retry_publish_failed", task_id=delivery.task_id, error=str(publish_failed)
            )
            raise Reject(str(publish_failed), requeue=True) from publish_failed
