"""Sentry: one event per final failure (a dead letter) or internal error, nothing for retries.

:class:`SentryReporter` is both a :class:`~resilience.observability.reporting.FailureReporter` of
the runtime and the ``before_send``/``before_breadcrumb`` of sentry-sdk:

- a **dead letter** is captured here as one event (its cause's stack trace, our error class as
  the issue's title, the attempt history as breadcrumbs); the same error re-raised to Celery
  afterwards, which ``CeleryIntegration`` captures again, is dropped;
- a **retry** or a **deferral** is a breadcrumb (``CeleryIntegration`` already ignores Celery's
  ``Retry``);
- an **internal error** (any other exception that escapes a task or the worker: a bug, a
  failure of our own machinery) is an event;
- a log line is a breadcrumb, never an event; Crons check-ins pass.

Every event's fingerprint is error class, component and operation (one Sentry issue each) and it
is tagged with severity, component, operation, recoverable, task name, resource, retry count and
breaker state. Secrets are scrubbed twice: sentry-sdk's ``EventScrubber`` made recursive with our
key names added to its denylist (before the SDK truncates values), then our
:class:`~resilience.scrub.Scrubber` over the whole event and every breadcrumb (key names at any
depth, the process's known secret values, secret shapes).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from typing import Any, cast

import sentry_sdk
from celery import Task, current_task, signals
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber
from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint
from sentry_sdk.utils import event_from_exception

from resilience.errors import AlchemiserError, CircuitBreakerOpenError
from resilience.guard.admission import Admission
from resilience.observability.reporting import FailureReport
from resilience.scrub import SECRET_KEY_PARTS, Scrubber
from resilience.task import DeliveryState
from worker.settings import Settings

__all__ = ["DEAD_LETTER_HINT", "SentryReporter", "install_sentry", "sentry_options"]

# Marks, in an event's hint, the event SentryReporter made of a dead letter.
DEAD_LETTER_HINT = "alchemiser_dead_letter"
# How many dead letters' errors are remembered to drop their re-raise (which follows at once).
REPORTED_MEMORY = 256
# An internal error lost the task (Celery acks it without a dead letter): critical by default.
INTERNAL_SEVERITY = "critical"

_LEVELS = {"critical": "fatal", "high": "error", "medium": "error", "low": "warning"}
# Worst first: the breaker_state tag is the worst state among the task's resources.
_BREAKER_STATES = ("open", "half_open", "closed")


def _breaker_state(error: BaseException | None, admission: Admission | None) -> str | None:
    """The worst breaker state of the run's resources, when known without asking Redis."""
    if isinstance(error, CircuitBreakerOpenError):
        return "open"
    states = {permit.state for permit in admission.permits} if admission else set()
    return next((state for state in _BREAKER_STATES if state in states), None)


def _label(
    event: Event,
    *,
    kind: str,
    error_type: str,
    severity: str,
    component: str,
    task_name: str,
    recoverable: bool,
    retry_count: int,
    resource: str,
    breaker_state: str | None,
) -> None:
    """Fingerprint, level and tags shared by every event this module lets through."""
    event["fingerprint"] = [error_type, component, task_name]
    event["level"] = cast("Any", _LEVELS.get(severity, "error"))
    tags = {
        "kind": kind,
        "error_type": error_type,
        "severity": severity,
        "component": component,
        "operation": task_name,
        "task_name": task_name,
        "recoverable": str(recoverable).lower(),
        "retry_count": str(retry_count),
    }
    if resource:
        tags["resource"] = resource
    if breaker_state is not None:
        tags["breaker_state"] = breaker_state
    event.setdefault("tags", {}).update(tags)


class SentryReporter:
    """This process's Sentry reporting: the runtime's reporter and the SDK's callbacks."""

    def __init__(self, scrubber: Scrubber) -> None:
        self._scrub = scrubber
        self._lock = threading.Lock()
        self._reported: deque[str] = deque(maxlen=REPORTED_MEMORY)

    def report(self, report: FailureReport) -> None:
        """A dead letter becomes an event; a retry or a deferral a breadcrumb, and so does each
        recovery strategy's result (before the event, so a dead letter's event shows them)."""
        for result in report.recovery:
            sentry_sdk.add_breadcrumb(
                category="alchemiser.recovery",
                level="info" if result.get("outcome") == "recovered" else "warning",
                message=f"{result.get('strategy')}: {result.get('outcome')}",
                data={"task_id": report.task_id, **result},
            )
        if report.action == "recovered":
            return
        if report.action == "dead_letter":
            self._capture_dead_letter(report)
            return
        error = report.error
        sentry_sdk.add_breadcrumb(
            category=f"alchemiser.{report.action}",
            level="warning" if report.action == "retry" else "info",
            message=f"{error.error_type}: {report.action} in {report.countdown_s:.3f} s",
            data={
                "task_id": report.task_id,
                "error_type": error.error_type,
                "message": error.message,
                "retry_count": report.retry_count,
                "reason": report.reason,
            },
        )

    def before_send(self, event: Event, hint: Hint) -> Event | None:
        """Keep dead letters, internal errors and check-ins (scrubbed); drop everything else."""
        if event.get("type") == "check_in":
            return event
        if not hint.get(DEAD_LETTER_HINT):
            exc_info = hint.get("exc_info")
            if exc_info is None or "log_record" in hint or self._is_reported(exc_info[1]):
                return None
            self._label_internal_error(event, exc_info[1])
        return cast("Event", self._scrub(event))

    def before_breadcrumb(self, crumb: Breadcrumb, hint: BreadcrumbHint) -> Breadcrumb | None:
        """Every breadcrumb, scrubbed (log lines included)."""
        return cast("Breadcrumb", self._scrub(crumb))

    def custom_repr(self, value: Any) -> str | None:
        """A container's repr with secret keys filtered at any depth (the SDK turns what lies
        deeper than its limit of 5 into a repr, where no key rule could find them)."""
        if isinstance(value, Mapping | list | tuple | set | frozenset):
            return repr(self._scrub(value))
        return None  # sentry-sdk's own repr; before_send scrubs its text

    def _is_reported(self, exc: BaseException) -> bool:
        if not isinstance(exc, AlchemiserError):
            return False
        with self._lock:
            return exc.error_id in self._reported

    def _capture_dead_letter(self, report: FailureReport) -> None:
        client = sentry_sdk.get_client()
        if not client.is_active():
            return
        error = report.error
        mechanism = {"type": "alchemiser", "handled": True}
        event, hint = event_from_exception(error, client.options, mechanism)
        cause = report.cause
        if cause is not None and cause is not error and error.__cause__ is None:
            # The cause carries the stack (and the frames' variables); our class is the title.
            cause_event, _ = event_from_exception(cause, client.options, mechanism)
            event["exception"]["values"][:0] = cause_event["exception"]["values"]
        _label(
            event,
            kind="final_failure",
            error_type=error.error_type,
            severity=error.severity.value,
            component=report.component,
            task_name=report.task_name,
            recoverable=error.recoverable,
            retry_count=report.retry_count,
            resource=str(error.details.get("resource") or ",".join(report.resources)),
            breaker_state=_breaker_state(error, report.admission),
        )
        event.setdefault("contexts", {})["dead_letter"] = {
            "dead_letter_id": report.dead_letter_id,
            "client_order_id": report.idempotency_key,
            "task_id": report.task_id,
            "reason": report.reason,
            "attempts": len(report.attempts),
            "error_id": error.error_id,
            "details": error.details,
        }
        event["breadcrumbs"] = {
            "values": [
                {
                    "timestamp": attempt.get("at"),
                    "category": f"alchemiser.{attempt.get('action')}",
                    "level": "error" if attempt.get("action") == "dead_letter" else "warning",
                    "message": f"attempt {attempt.get('attempt')}: {attempt.get('error_type')}",
                    "data": attempt,
                }
                for attempt in report.attempts
            ]
        }
        hint[DEAD_LETTER_HINT] = True
        with self._lock:
            self._reported.append(error.error_id)
        sentry_sdk.capture_event(event, hint=hint)

    def _label_internal_error(self, event: Event, exc: BaseException) -> None:
        # current_task is a proxy, false outside a task (a crash of the worker itself).
        task: Task[Any, Any] | None = current_task if current_task else None
        alchemiser = exc if isinstance(exc, AlchemiserError) else None
        headers = task.request.headers if task is not None else None
        _label(
            event,
            kind="internal_error",
            error_type=type(exc).__name__,
            severity=alchemiser.severity.value if alchemiser else INTERNAL_SEVERITY,
            component=str(getattr(task, "component", "worker")),
            task_name=task.name if task is not None else "worker",
            recoverable=False,
            retry_count=DeliveryState.from_headers(headers).failures,
            resource=",".join(getattr(task, "resources", ())),
            breaker_state=_breaker_state(exc, getattr(task, "admission", None)),
        )


def sentry_options(settings: Settings, reporter: SentryReporter) -> dict[str, Any]:
    """The ``sentry_sdk.init`` options of a worker or beat process (DSN set)."""
    assert settings.sentry_dsn is not None, "Sentry is only initialised with a DSN"
    return {
        "dsn": settings.sentry_dsn.get_secret_value(),
        "environment": settings.sentry_environment,
        "release": settings.sentry_release,
        # Beat tasks become Crons monitors (their intervals are whole minutes).
        "integrations": [CeleryIntegration(monitor_beat_tasks=True)],
        "event_scrubber": EventScrubber(
            denylist=[*DEFAULT_DENYLIST, *SECRET_KEY_PARTS], recursive=True
        ),
        "before_send": reporter.before_send,
        "before_breadcrumb": reporter.before_breadcrumb,
        "custom_repr": reporter.custom_repr,
    }


def install_sentry(settings: Settings, reporter: SentryReporter) -> None:
    """Initialise Sentry in the worker's main process, in each pool child and in beat."""

    def init(**_: Any) -> None:
        sentry_sdk.init(**sentry_options(settings, reporter))

    # celeryd_init: the main process (solo and thread pools run tasks there); a prefork child
    # starts its own client rather than share its parent's connections; beat sends check-ins.
    for signal in (signals.celeryd_init, signals.worker_process_init, signals.beat_init):
        signal.connect(init, weak=False)
