"""``tasks.escalate``: told of every final failure; runs the escalation, one step per run.

Published by ``ResilientTask`` with ``notification`` (the scrubbed
:class:`~resilience.policy.context.ErrorNotificationData` of a dead letter): the failure is logged
and noted into its group's alert. The escalation service then asks for runs of its own, published
here with their countdowns on the ``escalation`` queue: ``flush`` (send what the alert's flush
decided, on the policy's channels) and ``retry`` (a channel that failed for a while, once
more). ``alchemiser alerts ack`` publishes ``acknowledged`` (tell PagerDuty the incident was
acknowledged); beat publishes ``sweep`` (restart chains of flushes that were lost) and
``evaluate`` (the alert thresholds, whose breaches come back as ``notification``) every
minute. Without an escalation service (a runtime built without one) it only logs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from resilience.notify.service import EscalationService, Next
from resilience.task import ResilientTask
from tasks.application import application_task
from tasks.runtime import TradingRuntime, trading_runtime

__all__ = ["escalate"]

_log = structlog.get_logger("alchemiser.escalation")


class EscalationTask(ResilientTask):
    """Escalation never escalates its own failures (that would loop)."""

    escalates = False
    # Its failures are classified and counted with the trading components' (as before
    # components were the application's to name).
    component = "trading"


@application_task(base=EscalationTask, name="tasks.escalate")
def escalate(
    self: EscalationTask,
    *,
    notification: dict[str, Any] | None = None,
    flush: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
    acknowledged: dict[str, Any] | None = None,
    sweep: dict[str, Any] | None = None,
    evaluate: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One step of escalation; returns what it did."""
    runtime = trading_runtime(self.app)
    service = runtime.escalation
    if notification is not None:
        severity = str(notification.get("severity", "medium"))
        log = _log.critical if severity in ("critical", "high") else _log.warning
        log("escalation", **{k: v for k, v in notification.items() if k != "event"})
        if service is None:
            return {"logged": True, "severity": severity}
        upcoming = service.note(notification)  # type: ignore[arg-type]
        _publish(self, upcoming)
        return {"noted": True, "severity": severity, "scheduled": len(upcoming)}
    if evaluate is not None:
        return _evaluate(self, runtime)
    steps = {"flush": flush, "retry": retry, "acknowledged": acknowledged, "sweep": sweep}
    for kind, kwargs in steps.items():
        if kwargs is None:
            continue
        if service is None:
            return {"skipped": "no escalation service"}
        result, upcoming = _STEPS[kind](service, kwargs)
        _publish(self, upcoming)
        return result
    raise ValueError(
        "tasks.escalate needs notification, flush, retry, acknowledged, sweep or evaluate"
    )


def _evaluate(task: EscalationTask, runtime: TradingRuntime) -> dict[str, Any]:
    """The alert thresholds now; each breach that starts an incident is escalated as a final
    failure of its own (one group: AlertThresholdBreached in monitoring)."""
    if runtime.thresholds is None:
        return {"skipped": "no thresholds"}
    fired = runtime.thresholds.evaluate()
    for failure in fired:
        _log.warning(
            "threshold_breached", threshold=failure["operation"], message=failure["message"]
        )
        task.apply_async(kwargs={"notification": failure})
    return {"fired": [failure["operation"] for failure in fired]}


Step = Callable[[EscalationService, dict[str, Any]], tuple[dict[str, Any], list[Next]]]


def _flush(service: EscalationService, kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[Next]]:
    decided, report, upcoming = service.flush(**kwargs)
    return {
        "flush": decided.action,
        "alert_id": decided.alert_id,
        "delivered_to": list(report.delivered_to) if report else [],
        "held_back": not report.sent if report else False,
        "scheduled": len(upcoming),
    }, upcoming


def _retry(service: EscalationService, kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[Next]]:
    delivery, upcoming = service.retry(**kwargs)
    return {"retry": kwargs["channel"], "delivered": delivery.delivered}, upcoming


def _acknowledged(
    service: EscalationService, kwargs: dict[str, Any]
) -> tuple[dict[str, Any], list[Next]]:
    report, upcoming = service.acknowledge(str(kwargs["alert_id"]))
    delivered_to = list(report.delivered_to) if report else []
    return {"acknowledged": kwargs["alert_id"], "delivered_to": delivered_to}, upcoming


def _sweep(service: EscalationService, _: dict[str, Any]) -> tuple[dict[str, Any], list[Next]]:
    upcoming = service.sweep()
    return {"restarted": len(upcoming)}, upcoming


_STEPS: dict[str, Step] = {
    "flush": _flush,
    "retry": _retry,
    "acknowledged": _acknowledged,
    "sweep": _sweep,
}


def _publish(task: EscalationTask, upcoming: list[Next]) -> None:
    for step in upcoming:
        task.apply_async(kwargs={step.kind: step.kwargs}, countdown=step.countdown_s)
