"""Sending a flush's decision: channels, rate limits, fallback, retries, counts."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import redis

from resilience.clock import ManualClock
from resilience.context import ErrorNotificationData
from resilience.escalation import EscalationLevel, EscalationRule
from resilience.keys import KeySpace
from resilience.notify.alert_store import Flush
from resilience.notify.channel import Delivery, FailureReason
from resilience.notify.escalator import DEFAULT_RETRY_S, DeliveryStats, Escalator, Retry
from resilience.notify.model import (
    Notification,
    notification_from_json,
    notification_to_json,
)
from resilience.notify.throttle import NotificationThrottle
from tests.fakes.channels import ScriptedChannel


def failed(channel: str, reason: FailureReason, retry_after_s: float | None = None) -> Delivery:
    return Delivery.failed(channel, reason, "scripted", 0.02, retry_after_s)


def failure(severity: str = "critical") -> ErrorNotificationData:
    return {
        "severity": severity,
        "priority": "P1",
        "title": "OrderExecutionError in trading: submit_order",
        "error_type": "OrderExecutionError",
        "error_id": "err-1",
        "message": "broker answered 503",
        "component": "trading",
        "operation": "submit_order",
        "task_name": "tasks.submit_order",
        "occurred_at": "2026-11-29T03:00:00+00:00",
        "dead_letter_id": "dl-1",
    }


RULE = EscalationRule(
    name="critical",
    levels=(
        EscalationLevel(0.0, ("email", "slack", "sms"), fallback=("webhook", "console")),
        EscalationLevel(900.0, ("pagerduty",)),
    ),
)


def flush(levels: range = range(0, 1), severity: str = "critical") -> Flush:
    return Flush("notify", levels, 1.0, Notification.from_failure(failure(severity)), "a1")


@dataclass
class Rig:
    """Scripted channels, the real throttle and counters on the test Redis, and the clock."""

    channels: dict[str, ScriptedChannel]
    throttle: NotificationThrottle
    stats: DeliveryStats
    clock: ManualClock

    def escalator(self) -> Escalator:
        return Escalator(self.channels, self.throttle, self.stats)


@pytest.fixture
def rig(client: redis.Redis, keys: KeySpace) -> Rig:
    clock = ManualClock()
    return Rig(
        channels={
            name: ScriptedChannel(name)
            for name in ("email", "slack", "sms", "webhook", "pagerduty", "console")
        },
        throttle=NotificationThrottle(client, keys, server_clock=clock),
        stats=DeliveryStats(client, keys),
        clock=clock,
    )


def test_every_channel_of_the_levels_is_told_once_and_counted(rig: Rig) -> None:
    """Level 0's email, Slack and SMS each get the notification once; nothing falls back;
    the fleet counters say 3 notifications, none failed."""
    report = rig.escalator().send(flush(), RULE)
    assert report.sent and report.delivered_to == ("email", "slack", "sms")
    assert [len(rig.channels[n].sent) for n in ("email", "slack", "sms", "webhook", "console")] == [
        1,
        1,
        1,
        0,
        0,
    ]
    counts = rig.stats.snapshot()
    assert {k: v for k, v in counts.items() if k.startswith("notifications_total")} == {
        "notifications_total|email": 1.0,
        "notifications_total|slack": 1.0,
        "notifications_total|sms": 1.0,
    }
    assert not any(k.startswith("notifications_failed_total") for k in counts)


def test_a_failed_channel_falls_back_and_a_transient_one_is_retried_later(rig: Rig) -> None:
    """Slack answering 429 with Retry-After 7: the webhook (the level's first fallback) gets the
    same notification, and Slack is handed back to retry in 7 s; an SMS refused for good (4xx)
    is covered by that same webhook delivery (not sent twice) and is not retried; the
    failures are counted by reason."""
    rig.channels["slack"] = ScriptedChannel(
        "slack", failed("slack", FailureReason.RATE_LIMITED, 7.0)
    )
    rig.channels["sms"] = ScriptedChannel("sms", failed("sms", FailureReason.CLIENT_ERROR))
    report = rig.escalator().send(flush(), RULE)
    assert [(d.channel, d.delivered) for d in report.deliveries] == [
        ("email", True),
        ("slack", False),
        ("webhook", True),
        ("sms", False),
    ]
    assert report.retries == (Retry("slack", 7.0),)
    counts = rig.stats.snapshot()
    assert counts["notifications_failed_total|slack|rate_limited"] == 1.0
    assert counts["notifications_failed_total|sms|client_error"] == 1.0


def test_a_timeout_without_retry_after_is_retried_after_the_default(rig: Rig) -> None:
    """A transient failure without a Retry-After is retried DEFAULT_RETRY_S later."""
    rig.channels["email"] = ScriptedChannel("email", failed("email", FailureReason.TIMEOUT))
    report = rig.escalator().send(flush(), RULE)
    assert report.retries == (Retry("email", DEFAULT_RETRY_S),)
    assert "webhook" in report.delivered_to


def test_a_channel_not_configured_falls_back(rig: Rig) -> None:
    """A channel the policy names but the deployment lacks is a client error; its level's
    fallback delivers."""
    del rig.channels["sms"]
    report = rig.escalator().send(flush(), RULE)
    sms = next(d for d in report.deliveries if d.channel == "sms")
    assert (sms.delivered, sms.reason, sms.detail) == (
        False,
        FailureReason.CLIENT_ERROR,
        "not configured",
    )
    assert "webhook" in report.delivered_to
    assert report.retries == ()


def test_a_newly_reached_level_tells_only_its_channels(rig: Rig) -> None:
    """A flush for level 1 alone goes to PagerDuty, not again to level 0's channels."""
    report = rig.escalator().send(flush(range(1, 2)), RULE)
    assert report.delivered_to == ("pagerduty",)
    assert len(rig.channels["email"].sent) == 0


def test_the_rate_limit_holds_notifications_back_and_the_next_says_how_many(rig: Rig) -> None:
    """Critical: 5 go out, the 6th and 7th are held back (counted as suppressed); once the
    window allows, the next notification carries held_back 2."""
    reports = [rig.escalator().send(flush(), RULE) for _ in range(7)]
    assert [r.sent for r in reports] == [True] * 5 + [False, False]
    assert rig.stats.snapshot()["notifications_suppressed_total|rate_limited"] == 2.0
    rig.clock.advance(300.0)
    later = rig.escalator().send(flush(), RULE)
    assert later.sent and later.held_back == 2
    assert rig.channels["email"].sent[-1].held_back == 2


def test_a_resolved_notice_is_not_rate_limited(rig: Rig) -> None:
    """With the critical limit spent, a resolved notice still goes out."""
    for _ in range(5):
        rig.escalator().send(flush(), RULE)
    resolved = replace(flush(), action="resolve")
    resolved = replace(resolved, notification=resolved.notification.resolved())  # type: ignore[union-attr]
    assert rig.escalator().send(resolved, RULE).sent


def test_a_notification_survives_json_for_a_retry_task() -> None:
    """notification_to_json / notification_from_json round-trip exactly (a retry's argument)."""
    note = Notification.from_failure(failure()).with_held_back(3).resolved()
    assert notification_from_json(notification_to_json(note)) == note


def test_a_fallback_that_failed_is_not_asked_again(rig: Rig) -> None:
    """Slack fails and its first fallback (the webhook) fails too: the console delivers; then
    the SMS fails: the webhook is not asked again, the console already has it."""
    rig.channels["slack"] = ScriptedChannel("slack", failed("slack", FailureReason.SERVER_ERROR))
    rig.channels["webhook"] = ScriptedChannel(
        "webhook", failed("webhook", FailureReason.SERVER_ERROR)
    )
    rig.channels["sms"] = ScriptedChannel("sms", failed("sms", FailureReason.CLIENT_ERROR))
    report = rig.escalator().send(flush(), RULE)
    assert [(d.channel, d.delivered) for d in report.deliveries] == [
        ("email", True),
        ("slack", False),
        ("webhook", False),
        ("console", True),
        ("sms", False),
    ]
    assert len(rig.channels["webhook"].sent) == 1
