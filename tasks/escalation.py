"""``tasks.escalate``: told of every final failure. Until notification channels land it logs
the scrubbed notification at a level matching its severity."""

from __future__ import annotations

from typing import Any

import structlog
from celery import shared_task

from resilience.task import ResilientTask

__all__ = ["escalate"]

_log = structlog.get_logger("alchemiser.escalation")


class EscalationTask(ResilientTask):
    """Escalation never escalates its own failures (that would loop)."""

    escalates = False


@shared_task(bind=True, base=EscalationTask, name="tasks.escalate")
def escalate(self: EscalationTask, notification: dict[str, Any]) -> dict[str, Any]:
    """Log the notification; returns what was logged."""
    severity = str(notification.get("severity", "medium"))
    log = _log.critical if severity in ("critical", "high") else _log.warning
    log("escalation", **{k: v for k, v in notification.items() if k != "event"})
    return {"logged": True, "severity": severity}
