"""``tasks.escalate``: told of every final failure; runs the escalation, one step per run.

Published by ``ResilientTask`` with ``notification`` (the scrubbed
:class:`~resilience.context.ErrorNotificationData` of a dead letter): the failure is logged and
noted into its group's alert. The escalation service then asks for runs of its own, published
here with their countdowns on the ``escalation`` queue: ``flush`` (send what the alert's flush
decided, on the policy's channels) and ``retry`` (a channel that failed for a while, once
more). ``alchemiser alerts ack`` publishes ``acknowledged`` (tell PagerDuty the incident was
acknowledged). Without an escalation service (a runtime built without one) it only logs.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import shared_task

from resilience.notify.service import Next
from resilience.task import ResilientTask
from tasks.runtime import trading_runtime

__all__ = ["escalate"]

_log = structlog.get_logger("alchemiser.escalation")


class EscalationTask(ResilientTask):
    """Escalation never escalates its own failures (that would loop)."""

    escalates = False


@shared_task(bind=True, base=EscalationTask, name="tasks.escalate")
def escalate(
    self: EscalationTask,
    notification: dict[str, Any] | None = None,
    flush: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
    acknowledged: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One step of escalation; returns what it did."""
    service = trading_runtime(self.app).escalation
    if notification is not None:
        severity = str(notification.get("severity", "medium"))
        log = _log.critical if severity in ("critical", "high") else _log.warning
        log("escalation", **{k: v for k, v in notification.items() if k != "event"})
        if service is None:
            return {"logged": True, "severity": severity}
        upcoming = service.note(notification)  # type: ignore[arg-type]
        _publish(self, upcoming)
        return {"noted": True, "severity": severity, "scheduled": len(upcoming)}
    if service is None:
        return {"skipped": "no escalation service"}
    if flush is not None:
        decided, report, upcoming = service.flush(**flush)
        _publish(self, upcoming)
        return {
            "flush": decided.action,
            "alert_id": decided.alert_id,
            "delivered_to": list(report.delivered_to) if report else [],
            "held_back": not report.sent if report else False,
            "scheduled": len(upcoming),
        }
    if retry is not None:
        delivery, upcoming = service.retry(**retry)
        _publish(self, upcoming)
        return {"retry": retry["channel"], "delivered": delivery.delivered}
    if acknowledged is not None:
        report, upcoming = service.acknowledge(str(acknowledged["alert_id"]))
        _publish(self, upcoming)
        return {
            "acknowledged": acknowledged["alert_id"],
            "delivered_to": list(report.delivered_to) if report else [],
        }
    raise ValueError("tasks.escalate needs notification, flush, retry or acknowledged")


def _publish(task: EscalationTask, upcoming: list[Next]) -> None:
    for step in upcoming:
        task.apply_async(kwargs={step.kind: step.kwargs}, countdown=step.countdown_s)
