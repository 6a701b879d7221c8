"""Escalation as the ``tasks.escalate`` task runs it, without Celery in sight.

Three steps, each one run of the task: a final failure is noted into its group's alert (the first
one asks for the alert's first flush); a flush decides what to send and sends it (asking for the
next flush, and for retries of channels that failed for a while); a retry sends once more on one
channel. What to schedule next comes back as :class:`Next` items; the task publishes them with
their countdowns, so the chain lives in the broker and survives worker restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import structlog

from resilience.notify.alert_store import AlertStore, Flush
from resilience.notify.channel import Delivery
from resilience.notify.escalation_policy import EscalationPolicy, EscalationRule
from resilience.notify.escalator import Escalator, SendReport
from resilience.notify.model import Notification, notification_from_json, notification_to_json
from resilience.policy.context import ErrorNotificationData
from resilience.storage.clock import Clock

__all__ = ["MAX_CHANNEL_RETRIES", "SWEEP_GRACE_S", "EscalationService", "Next"]

_log = structlog.get_logger("alchemiser.escalation")

# A channel failing for a while is retried this many times, then left to its fallbacks.
MAX_CHANNEL_RETRIES = 5
# A flush this late is taken as lost and published again by the sweep (beat, every minute).
SWEEP_GRACE_S = 60.0


@dataclass(frozen=True, slots=True)
class Next:
    """A run of the escalation task to schedule ``countdown_s`` from now."""

    kind: Literal["flush", "retry"]
    countdown_s: float
    kwargs: dict[str, Any]


class EscalationService:
    """Notes failures, runs flushes, retries channels."""

    def __init__(
        self,
        store: AlertStore,
        policy: EscalationPolicy,
        escalator: Escalator,
        clock: Clock,
    ) -> None:
        self._store = store
        self._policy = policy
        self._escalator = escalator
        self._clock = clock

    def note(self, failure: ErrorNotificationData) -> list[Next]:
        """A final failure: into its alert; the alert's first flush if it opened one."""
        rule = self._policy.route(Notification.from_failure(failure))
        noted = self._store.note(failure, rule)
        _log.info(
            "failure_noted",
            alert_id=noted.alert_id,
            rule=rule.name,
            opened=noted.opened,
            error_type=failure["error_type"],
            component=failure["component"],
        )
        if not noted.opened:
            return []
        group = f"{failure['error_type']}:{failure['component']}"
        return [self._flush_at(group, rule.name, noted.flush_at_s)]

    def flush(
        self, group: str, rule: str, at: float
    ) -> tuple[Flush, SendReport | None, list[Next]]:
        """The flush of ``group``'s alert under ``rule`` scheduled for ``at`` (Redis time, s):
        what it decided, what it sent, what comes next. (The names are the task's kwargs.)"""
        escalation_rule = self._rule(rule)
        decided = self._store.flush(group, escalation_rule, at)
        upcoming: list[Next] = []
        report = None
        if decided.notification is not None:
            report = self._escalator.send(decided, escalation_rule)
            upcoming.extend(_retries(report))
        next_flush = None
        if decided.next_flush_at_s is not None:
            next_flush = self._flush_at(group, escalation_rule.name, decided.next_flush_at_s)
            upcoming.append(next_flush)
        _log.info(
            "alert_flush",
            alert_id=decided.alert_id,
            group=group,
            action=decided.action,
            levels=list(decided.levels),
            delivered_to=list(report.delivered_to) if report else [],
            next_flush_in_s=None if next_flush is None else round(next_flush.countdown_s, 3),
        )
        return decided, report, upcoming

    def acknowledge(self, alert_id: str) -> tuple[SendReport | None, list[Next]]:
        """Tell the receivers that track incidents that ``alert_id`` was acknowledged (None:
        it is no longer open and acknowledged, nothing to tell)."""
        notice = self._store.acknowledged_notice(alert_id)
        if notice is None:
            return None, []
        report = self._escalator.acknowledge(notice, self._rule(notice.rule))
        return report, _retries(report)

    def sweep(self) -> list[Next]:
        """A flush now for each open alert whose chain of flushes was lost (its next flush is
        more than :data:`SWEEP_GRACE_S` late): say, the task that ran the last flush could not
        publish the next. A duplicate of a flush that was only late answers stale."""
        upcoming = []
        for alert in self._store.overdue(SWEEP_GRACE_S):
            assert alert.next_flush_at_s is not None
            _log.warning(
                "alert_chain_restarted",
                alert_id=alert.alert_id,
                group=alert.group,
                late_s=round(self._clock.now_s() - alert.next_flush_at_s, 3),
            )
            upcoming.append(
                Next(
                    "flush",
                    0.0,
                    {"group": alert.group, "rule": alert.rule, "at": alert.next_flush_at_s},
                )
            )
        return upcoming

    def retry(
        self, channel: str, notification: dict[str, Any], attempt: int
    ) -> tuple[Delivery, list[Next]]:
        """Send again on ``channel``; once more later if it is still failing for a while."""
        delivery = self._escalator.retry(channel, notification_from_json(notification))
        transient = delivery.reason is not None and delivery.reason.transient
        if delivery.delivered or not transient or attempt >= MAX_CHANNEL_RETRIES:
            return delivery, []
        wait_s = delivery.retry_after_s or self._escalator.retry_s * 2 ** (attempt - 1)
        return delivery, [
            Next(
                "retry",
                wait_s,
                {"channel": channel, "notification": notification, "attempt": attempt + 1},
            )
        ]

    def _flush_at(self, group: str, rule_name: str, at_s: float) -> Next:
        # At most a group_interval ahead: a flush that comes early runs again for the same time,
        # so a jump of the fleet's clock (chaos clock) is seen within one group_interval.
        countdown_s = min(max(at_s - self._clock.now_s(), 0.0), self._store.timing.group_interval_s)
        return Next("flush", countdown_s, {"group": group, "rule": rule_name, "at": at_s})

    def _rule(self, name: str) -> EscalationRule:
        for rule in (*self._policy.rules, self._policy.default):
            if rule.name == name:
                return rule
        # The policy changed since the alert opened: the default rule takes over.
        return self._policy.default


def _retries(report: SendReport) -> list[Next]:
    """The first retry of each channel that failed for a while in ``report``."""
    if report.notification is None:
        return []
    document = notification_to_json(report.notification)
    return [
        Next(
            "retry",
            retry.after_s,
            {"channel": retry.channel, "notification": document, "attempt": 1},
        )
        for retry in report.retries
    ]
