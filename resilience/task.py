"""ResilientTask: the Celery base class that applies the error hierarchy to every task.

Per delivery it (1) quarantines a message redelivered too often (a poison task that kills its
worker), (2) refuses to run past the task's deadline, (3) runs the body, and on an exception
(4) classifies it, (5) asks the resolver what follows, and (6) retries, defers, or writes the
dead letter and publishes the escalation. A task that succeeds first time costs no Redis call.

The attempt history travels in the message's ``alchemiser`` header, so retries need no shared
state. Services (Redis, stores, classifier, clock) come from a runtime the application puts in
``app.conf[RUNTIME_SETTING]``: this package knows nothing of the app that uses it.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, NoReturn

import structlog
from celery import Task
from celery.exceptions import Ignore, Reject, Retry
from redis import Redis
from redis.exceptions import RedisError

from resilience.classify import Component, is_timeout
from resilience.clock import Clock
from resilience.context import ErrorContext
from resilience.deadletter import DeadLetter, DeadLetterStore, bound_value
from resilience.errors import (
    AdmissionRefusedError,
    AlchemiserError,
    CircuitBreakerOpenError,
    PoisonMessageError,
    RateLimitError,
    StaleOrderError,
)
from resilience.guard import Admission, Guard, Outcome, RetryKind
from resilience.handler import ErrorDetails, ErrorHandler, notification_data
from resilience.keys import KeySpace
from resilience.metrics import ErrorMetrics
from resilience.outcomes import OutcomeCounter
from resilience.reporting import FailureAction, FailureReport, FailureReporter, report_to
from resilience.resolver import Action, Decision, decide
from resilience.scrub import Scrubber

__all__ = ["HEADER", "RUNTIME_SETTING", "DeliveryState", "ResilienceRuntime", "ResilientTask"]

HEADER = "alchemiser"
RUNTIME_SETTING = "alchemiser_runtime"
HISTORY_LIMIT = 25
# A count in the header beyond this is garbage, not a history (deferrals are the larger one).
MAX_HEADER_COUNT = 1_000_000
REDELIVERY_KEY_TTL_S = 7 * 24 * 3600
MESSAGE_LIMIT = 500
# A refused run comes back after the resource's retry-after plus up to this share of it.
ADMISSION_JITTER = 0.5

_log = structlog.get_logger("alchemiser.task")

# Where a delivery's parsed header is kept on Celery's request context (one per delivery).
_STATE_ATTRIBUTE = "alchemiser_delivery_state"


@dataclass(frozen=True, slots=True)
class ResilienceRuntime:
    """The services a ResilientTask uses, built once per process by the application."""

    redis: Redis
    keys: KeySpace
    dead_letters: DeadLetterStore
    handler: ErrorHandler
    scrubber: Scrubber
    outcomes: OutcomeCounter
    clock: Clock
    max_countdown_s: float
    max_redeliveries: int = 3
    # Fleet-wide breakers and limits of the resources tasks declare; None: nothing is guarded.
    guard: Guard | None = None
    # Fleet-wide recovery counts (the handler's recorders count the errors); None: not kept.
    metrics: ErrorMetrics | None = None
    escalation_task: str = "tasks.escalate"
    rng: random.Random = field(default_factory=random.Random)
    # Told of every retry, deferral and dead letter (an error tracker such as Sentry).
    reporters: tuple[FailureReporter, ...] = ()


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """What the ``alchemiser`` header carries from one attempt to the next."""

    failures: int = 0
    deferrals: int = 0
    history: tuple[dict[str, Any], ...] = ()
    replay_of: str | None = None

    @classmethod
    def from_headers(cls, headers: dict[str, Any] | None) -> DeliveryState:
        """Read the header (absent on a first delivery).

        A malformed header (not an object, counts that are not small non-negative integers, a
        history that is not a list of objects, a replay id that is not a string) is read as
        absent, and said in the log: raising here would drop a valid order unrecorded.
        """
        raw = (headers or {}).get(HEADER)
        if raw is None:
            return cls()
        state = cls._parse(raw)
        if state is None:
            _log.warning("malformed_delivery_header", header=repr(raw)[:200])
            return cls()
        return state

    @classmethod
    def _parse(cls, raw: Any) -> DeliveryState | None:
        if not isinstance(raw, dict):
            return None
        failures = raw.get("failures", 0)
        deferrals = raw.get("deferrals", 0)
        history = raw.get("history", ())
        replay_of = raw.get("replay_of")
        counts_ok = all(
            type(n) is int and 0 <= n <= MAX_HEADER_COUNT for n in (failures, deferrals)
        )
        history_ok = isinstance(history, list | tuple) and all(
            isinstance(record, dict) for record in history
        )
        if not counts_ok or not history_ok or not isinstance(replay_of, str | None):
            return None
        return cls(
            failures=failures,
            deferrals=deferrals,
            history=tuple(history)[-HISTORY_LIMIT:],
            replay_of=replay_of,
        )

    def to_header(self) -> dict[str, Any]:
        """The header value (JSON)."""
        return {
            "failures": self.failures,
            "deferrals": self.deferrals,
            "history": list(self.history),
            "replay_of": self.replay_of,
        }

    @property
    def delivery(self) -> str:
        """Which delivery of the task this is: the same on a redelivery, new on a retry."""
        return f"{self.failures}.{self.deferrals}"

    def after(self, record: dict[str, Any], *, deferred: bool) -> DeliveryState:
        """The state carried to the next attempt."""
        return DeliveryState(
            failures=self.failures + (0 if deferred else 1),
            deferrals=self.deferrals + (1 if deferred else 0),
            history=(*self.history, record)[-HISTORY_LIMIT:],
            replay_of=self.replay_of,
        )


class _SettledElsewhere(Exception):  # noqa: N818 - a signal, not an error
    """Raised instead of writing a dead letter when an earlier attempt already did the task's
    work; ``__call__`` returns ``result`` as the task's success."""

    def __init__(self, result: Any) -> None:
        super().__init__("settled elsewhere")
        self.result = result


def _iso(now_s: float) -> str:
    return datetime.fromtimestamp(now_s, UTC).isoformat()


class ResilientTask(Task):  # type: ignore[type-arg]
    """Base class of every Alchemiser task (``@app.task(base=ResilientTask)``)."""

    acks_late = True
    reject_on_worker_lost = True
    # Celery's own retry ceiling is off: the error class's policy decides.
    max_retries = None
    component: ClassVar[Component] = "trading"
    escalates: ClassVar[bool] = True
    # Guarded resources (resilience.resources) every run must be admitted to.
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

    def delivery_state(self) -> DeliveryState:
        """What this delivery's ``alchemiser`` header says, read once per delivery (a malformed
        header is logged once, however often the task asks)."""
        request = self.request
        state: DeliveryState | None = getattr(request, _STATE_ATTRIBUTE, None)
        if state is None:
            state = DeliveryState.from_headers(request.headers)
            setattr(request, _STATE_ATTRIBUTE, state)
        return state

    def client_order_id_of(self, kwargs: dict[str, Any]) -> str | None:
        """The order's idempotency key, if the task is an order."""
        value = kwargs.get("client_order_id")
        return str(value) if value is not None else None

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
        runtime = self.runtime
        try:
            return self._deliver(runtime, args, kwargs)
        except _SettledElsewhere as settled:
            return settled.result

    def _deliver(
        self, runtime: ResilienceRuntime, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """One delivery: quarantine, deadline, admission, the body and its failure handling."""
        request = self.request
        state = self.delivery_state()
        redelivered = bool((request.delivery_info or {}).get("redelivered"))
        if redelivered:
            redeliveries = self._count_redelivery(runtime, state)
            if redeliveries > runtime.max_redeliveries:
                poison = PoisonMessageError(
                    f"the task was redelivered {redeliveries} times (its worker process died"
                    f" while running it); quarantined after {runtime.max_redeliveries}"
                )
                self._dead_letter(
                    runtime,
                    poison,
                    args=args,
                    kwargs=kwargs,
                    state=state,
                    reason="poison message",
                    cause=None,
                    counted=False,
                )
                raise Ignore()
        # A replay's first delivery, counted once however it ends (its retries, deferrals and
        # redeliveries carry the same replay_of); a replay the publisher lost is not counted.
        first_of_replay = not (state.failures or state.deferrals or redelivered)
        if state.replay_of and first_of_replay and runtime.metrics is not None:
            runtime.metrics.record_replayed()
        kwargs = self.prepare_kwargs(dict(kwargs))
        deadline = self.deadline_s(kwargs)
        if deadline is not None and runtime.clock.now_s() > deadline:
            stale = StaleOrderError(f"deadline {_iso(deadline)} passed before the task could run")
            self._dead_letter(
                runtime,
                stale,
                args=args,
                kwargs=kwargs,
                state=state,
                reason="deadline passed",
                cause=None,
                counted=False,
            )
            raise Ignore()
        admission = self._admit(runtime, args=args, kwargs=kwargs, state=state, deadline=deadline)
        started = time.perf_counter()
        try:
            result = self.run(*args, **kwargs)
        except (Retry, Ignore, Reject):
            self._record(runtime, admission, Outcome.NONE, started)
            raise
        except Exception as exc:
            self._on_failure(
                runtime,
                exc,
                args=args,
                kwargs=kwargs,
                state=state,
                deadline=deadline,
                admission=admission,
                started=started,
            )
        self._record(runtime, admission, Outcome.OK, started)
        if state.failures or redelivered:
            runtime.outcomes.incr("recovered", self.name)
            if runtime.metrics is not None:
                runtime.metrics.record_recovered(state.failures)
        return result

    def _admit(
        self,
        runtime: ResilienceRuntime,
        *,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        state: DeliveryState,
        deadline: float | None,
    ) -> Admission | None:
        """Ask the declared resources to admit this run; defer it (no attempt spent) if not."""
        guard = runtime.guard
        if guard is None or not self.resources:
            return None
        admission = guard.admit(self.resources, ticket=f"{self.request.id}:{state.delivery}")
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
            self._dead_letter(
                runtime, refused, args=args, kwargs=kwargs, state=state,
                reason=decision.reason, cause=None, counted=False,
            )  # fmt: skip
            raise Ignore()
        _log.debug(
            "task_deferred",
            task=self.name,
            task_id=str(self.request.id),
            resource=admission.refused_by,
            reason=admission.reason,
            countdown_s=round(decision.countdown_s, 3),
        )
        record = self._attempt_record(runtime, refused, decision, now_s, state)
        self._report(
            runtime, "defer", refused, state, decision.reason, countdown_s=decision.countdown_s
        )
        self._schedule_retry(
            args, kwargs, decision.countdown_s, state.after(record, deferred=True), refused
        )

    def _record(
        self,
        runtime: ResilienceRuntime,
        admission: Admission | None,
        outcome: Outcome,
        started: float,
        *,
        retry: RetryKind | None = None,
        push_s: float | None = None,
    ) -> bool:
        """Record the run's outcome on its resources; whether the retry budget pays a retry."""
        if admission is None or runtime.guard is None:
            return True
        result = runtime.guard.record(
            admission,
            outcome,
            duration_s=time.perf_counter() - started,
            retry=retry,
            push_s=push_s,
        )
        return result.retry_allowed

    def _count_redelivery(self, runtime: ResilienceRuntime, state: DeliveryState) -> int:
        key = runtime.keys.redeliveries(str(self.request.id), state.delivery)
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

    def _on_failure(
        self,
        runtime: ResilienceRuntime,
        exc: Exception,
        *,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        state: DeliveryState,
        deadline: float | None,
        admission: Admission | None = None,
        started: float = 0.0,
    ) -> NoReturn:
        request = self.request
        error = self._handle(runtime, exc, state).error
        error.retry_count = state.failures
        now_s = runtime.clock.now_s()
        decision = decide(
            error,
            state.failures + 1,
            now_s=now_s,
            max_countdown_s=runtime.max_countdown_s,
            deadline_s=deadline,
            rng=runtime.rng,
        )
        retry_kind: RetryKind | None = None
        if decision.action is Action.RETRY:
            retry_kind = "timeout" if is_timeout(exc) else "retry"
        retry_paid = self._record(
            runtime,
            admission,
            Outcome.FAILED if error.policy.counts_against_breaker else Outcome.IGNORED,
            started,
            retry=retry_kind,
            push_s=error.retry_after_s if isinstance(error, RateLimitError) else None,
        )
        if not retry_paid:
            decision = Decision(Action.DEAD_LETTER, 0.0, "retry budget exhausted")
        record = self._attempt_record(runtime, error, decision, now_s, state)
        deferred = decision.action is Action.DEFER
        next_state = state.after(record, deferred=deferred)
        _log.info(
            "task_failed",
            task=self.name,
            task_id=str(request.id),
            error_type=error.error_type,
            error_id=error.error_id,
            action=decision.action.value,
            countdown_s=round(decision.countdown_s, 3),
            attempt=state.failures + 1,
            reason=decision.reason,
        )
        if decision.action is Action.DEAD_LETTER:
            self._dead_letter(
                runtime,
                error,
                args=args,
                kwargs=kwargs,
                state=next_state,
                reason=decision.reason,
                cause=exc,
                counted=True,
            )
            raise error from exc
        runtime.outcomes.incr("deferred" if deferred else "retried", self.name)
        self._report(
            runtime,
            "defer" if deferred else "retry",
            error,
            state,
            decision.reason,
            cause=exc,
            countdown_s=decision.countdown_s,
        )
        self._schedule_retry(args, kwargs, decision.countdown_s, next_state, error)

    def _handle(
        self, runtime: ResilienceRuntime, exc: BaseException, state: DeliveryState
    ) -> ErrorDetails:
        """Classify ``exc`` and have the runtime's handler count and log it."""
        request = self.request
        context = ErrorContext(
            operation=self.name,
            component=self.component,
            function_name=getattr(self.run, "__name__", None),
            request_id=str(request.id),
        )
        return runtime.handler.handle_error(
            exc,
            context,
            self.component,
            {"task_name": self.name, "task_id": str(request.id), "attempt": state.failures + 1},
        )

    def _schedule_retry(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        countdown_s: float,
        state: DeliveryState,
        error: AlchemiserError,
    ) -> NoReturn:
        headers = {**(self.request.headers or {}), HEADER: state.to_header()}
        try:
            raise self.retry(
                args=args, kwargs=kwargs, countdown=countdown_s, headers=headers, exc=error
            )
        except Reject as publish_failed:
            # Celery turns a failed publish of the retry into Reject(requeue=False), which
            # deletes the message on Redis: the task would be lost. Hand it back instead.
            _log.critical(
                "retry_publish_failed", task_id=str(self.request.id), error=str(publish_failed)
            )
            raise Reject(str(publish_failed), requeue=True) from publish_failed

    def _attempt_record(
        self,
        runtime: ResilienceRuntime,
        error: AlchemiserError,
        decision: Decision,
        now_s: float,
        state: DeliveryState,
    ) -> dict[str, Any]:
        return {
            "attempt": state.failures + 1,
            "at": _iso(now_s),
            "error_type": error.error_type,
            "message": runtime.scrubber.text(error.message)[:MESSAGE_LIMIT],
            "action": decision.action.value,
            "countdown_s": round(decision.countdown_s, 3),
            "hostname": str(self.request.hostname or ""),
        }

    def _dead_letter(
        self,
        runtime: ResilienceRuntime,
        error: AlchemiserError,
        *,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        state: DeliveryState,
        reason: str,
        cause: BaseException | None,
        counted: bool,
    ) -> None:
        """Write the dead letter, count it, report and escalate it. ``counted``: whether the
        error handler has counted ``error`` already (a failure of the body); one dead-lettered
        before the body ran is counted here, so every dead letter is one handled error.

        Raises :class:`_SettledElsewhere` instead if :meth:`settled_elsewhere` finds the work
        done, so the dead letters list only tasks that did not happen."""
        self._settle_elsewhere(runtime, error, kwargs, state)
        request = self.request
        scrub = runtime.scrubber
        now_s = runtime.clock.now_s()
        history = list(state.history)
        if not history or history[-1].get("error_type") != error.error_type:
            history.append(
                self._attempt_record(
                    runtime, error, Decision(Action.DEAD_LETTER, 0.0, reason), now_s, state
                )
            )
        tb = "".join(traceback.format_exception(cause)) if cause is not None else None
        delivery_info = request.delivery_info or {}
        entry = DeadLetter(
            id=str(request.id),
            task=self.name,
            queue=delivery_info.get("routing_key"),
            args=bound_value(scrub(list(args))),
            kwargs=bound_value(scrub(kwargs)),
            headers=scrub({HEADER: state.to_header()}),
            client_order_id=bound_value(self.client_order_id_of(kwargs), 128),
            error_type=error.error_type,
            message=scrub.text(error.message)[:MESSAGE_LIMIT],
            reason=reason,
            severity=error.severity.value,
            traceback=scrub.text(tb) if tb else None,
            context=scrub(
                {
                    "component": self.component,
                    "operation": self.name,
                    "error_id": error.error_id,
                    "error_context": error.context.to_dict() if error.context else None,
                    "details": error.details,
                }
            ),
            attempts=history,
            hostname=str(request.hostname or ""),
            dead_at=_iso(now_s),
            replay_of=state.replay_of,
        )
        try:
            evicted = runtime.dead_letters.add(entry)
        except Exception as store_failure:
            # Without the dead letter, acking would lose the task: hand it back to the queue.
            _log.critical("dead_letter_write_failed", task_id=entry.id, error=repr(store_failure))
            raise Reject(str(store_failure), requeue=True) from store_failure
        if evicted:
            _log.warning("dead_letters_evicted", count=len(evicted), ids=evicted[:10])
        runtime.outcomes.incr("dead_lettered", self.name)
        if not counted:
            self._handle(runtime, error, state)
        _log.error(
            "task_dead_lettered",
            task=self.name,
            task_id=entry.id,
            error_type=entry.error_type,
            reason=reason,
            attempts=len(history),
            client_order_id=entry.client_order_id,
        )
        self._report(runtime, "dead_letter", error, state, reason, cause=cause, entry=entry)
        if self.escalates and error.policy.escalate:
            self._escalate(runtime, error, entry, reason)

    def _settle_elsewhere(
        self,
        runtime: ResilienceRuntime,
        error: AlchemiserError,
        kwargs: dict[str, Any],
        state: DeliveryState,
    ) -> None:
        """Raise :class:`_SettledElsewhere` if an earlier attempt already did the work."""
        task_id = str(self.request.id)
        try:
            result = self.settled_elsewhere(kwargs, state)
        except Exception as lookup_failure:  # cannot tell: the dead letter is the safe answer
            _log.warning(
                "settlement_lookup_failed",
                task=self.name,
                task_id=task_id,
                error_type=error.error_type,
                error=runtime.scrubber.text(repr(lookup_failure))[:MESSAGE_LIMIT],
            )
            return
        if result is None:
            return
        _log.info(
            "task_settled_elsewhere", task=self.name, task_id=task_id, error_type=error.error_type
        )
        runtime.outcomes.incr("recovered", self.name)
        if runtime.metrics is not None:
            runtime.metrics.record_recovered(state.failures)
        raise _SettledElsewhere(result)

    def _report(
        self,
        runtime: ResilienceRuntime,
        action: FailureAction,
        error: AlchemiserError,
        state: DeliveryState,
        reason: str,
        *,
        cause: BaseException | None = None,
        countdown_s: float = 0.0,
        entry: DeadLetter | None = None,
    ) -> None:
        """Tell the runtime's reporters (an error tracker) of this failure."""
        if not runtime.reporters:
            return
        # A dead letter's state already counts its last failure: its history says how many
        # of the attempts before it were retried.
        retries = state.failures
        if entry is not None:
            retries = sum(attempt.get("action") == Action.RETRY.value for attempt in entry.attempts)
        report = FailureReport(
            action=action,
            error=error,
            cause=cause,
            task_name=self.name,
            task_id=str(self.request.id),
            component=self.component,
            reason=reason,
            retry_count=retries,
            resources=self.resources,
            admission=self.admission,
            countdown_s=countdown_s,
            dead_letter_id=entry.id if entry else None,
            client_order_id=entry.client_order_id if entry else None,
            attempts=tuple(entry.attempts) if entry else (),
        )
        report_to(runtime.reporters, report)

    def _escalate(
        self, runtime: ResilienceRuntime, error: AlchemiserError, entry: DeadLetter, reason: str
    ) -> None:
        data = notification_data(
            error,
            component=self.component,
            operation=self.name,
            task_name=self.name,
            scrub=runtime.scrubber,
            dead_letter_id=entry.id,
            client_order_id=entry.client_order_id,
            attempts=len(entry.attempts),
            reason=reason,
        )
        try:
            self.app.send_task(runtime.escalation_task, kwargs={"notification": data})
        except Exception as publish_failure:  # the dead letter is stored; the alert is best effort
            _log.error("escalation_publish_failed", task_id=entry.id, error=repr(publish_failure))
