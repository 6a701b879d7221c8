"""Escalation step by step, as the task runs it: note, flush, retry (real Redis, scripted
channels, an injected clock)."""

from __future__ import annotations

import pytest
import redis

from resilience.notify import render
from resilience.notify.alert_store import AlertStore, GroupTiming
from resilience.notify.channel import Delivery, FailureReason
from resilience.notify.escalation_policy import DEFAULT_POLICY
from resilience.notify.escalation_table import policy_from_mapping
from resilience.notify.escalator import DeliveryStats, Escalator
from resilience.notify.model import Notification, notification_to_json
from resilience.notify.service import MAX_CHANNEL_RETRIES, SWEEP_GRACE_S, EscalationService
from resilience.notify.throttle import NotificationThrottle
from resilience.policy.context import ErrorNotificationData
from resilience.storage.clock import ManualClock
from resilience.storage.keys import KeySpace
from tests.fakes.channels import ScriptedChannel


def failure(n: int, severity: str = "critical") -> ErrorNotificationData:
    return {
        "severity": severity,
        "priority": "P1",
        "title": "DatabaseError in trading: sync_positions",
        "error_type": "DatabaseError",
        "error_id": f"err-{n}",
        "message": "connection reset",
        "component": "trading",
        "operation": "sync_positions",
        "task_name": "tasks.sync_positions",
        "occurred_at": "2026-11-29T03:00:00+00:00",
    }


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def service(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, channels: dict[str, ScriptedChannel]
) -> EscalationService:
    store = AlertStore(client, keys, GroupTiming(), server_clock=clock)
    throttle = NotificationThrottle(client, keys, server_clock=clock)
    escalator = Escalator(channels, throttle, DeliveryStats(client, keys))
    return EscalationService(store, DEFAULT_POLICY, escalator, clock)


def test_a_critical_failure_is_flushed_at_once_to_email_slack_and_sms(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """The first critical failure asks for a flush now (countdown 0); that flush tells email,
    Slack and SMS and asks for the next flush a group_interval later; a second failure before
    it asks for nothing."""
    channels = {n: ScriptedChannel(n) for n in ("email", "slack", "sms", "console")}
    escalation = service(client, keys, clock, channels)
    (first,) = escalation.note(failure(1))
    assert (first.kind, first.countdown_s, first.kwargs["rule"]) == ("flush", 0.0, "critical")
    assert escalation.note(failure(2)) == []
    decided, report, upcoming = escalation.flush(**first.kwargs)
    assert decided.action == "notify"
    assert report is not None and report.delivered_to == ("email", "slack", "sms")
    assert [len(channels[n].sent) for n in ("email", "slack", "sms")] == [1, 1, 1]
    assert channels["email"].sent[0].count == 2
    assert [(n.kind, n.countdown_s) for n in upcoming] == [("flush", 300.0)]


def test_a_channel_failing_for_a_while_is_retried_then_left_to_its_fallback(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Slack answering 429 (Retry-After 7) falls back to the console and is retried in 7 s;
    a retry that fails again (5xx) is retried with backoff up to MAX_CHANNEL_RETRIES; one
    that delivers ends it."""
    channels = {n: ScriptedChannel(n) for n in ("email", "sms", "console")}
    channels["slack"] = ScriptedChannel(
        "slack",
        Delivery.failed("slack", FailureReason.RATE_LIMITED, "HTTP 429", 0.01, 7.0),
        Delivery.failed("slack", FailureReason.SERVER_ERROR, "HTTP 503", 0.01),
    )
    escalation = service(client, keys, clock, channels)
    (first,) = escalation.note(failure(1))
    _, report, upcoming = escalation.flush(**first.kwargs)
    assert report is not None and "console" in report.delivered_to
    retry = next(n for n in upcoming if n.kind == "retry")
    assert (retry.countdown_s, retry.kwargs["channel"], retry.kwargs["attempt"]) == (
        7.0,
        "slack",
        1,
    )
    delivery, again = escalation.retry(**retry.kwargs)
    assert (delivery.delivered, [n.countdown_s for n in again]) == (False, [30.0])
    delivery, done = escalation.retry(**again[0].kwargs)
    assert (delivery.delivered, done) == (True, [])
    assert len(channels["slack"].sent) == 3


def test_retries_stop_after_the_maximum(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """The last allowed retry that fails schedules nothing more."""
    channels = {
        "slack": ScriptedChannel(
            "slack", *(Delivery.failed("slack", FailureReason.TIMEOUT, "t", 1.0),) * 10
        )
    }
    escalation = service(client, keys, clock, channels)
    note = Notification.from_failure(failure(1))
    delivery, upcoming = escalation.retry("slack", notification_to_json(note), MAX_CHANNEL_RETRIES)
    assert (delivery.delivered, upcoming) == (False, [])


def escalation_alert_id(client: redis.Redis, keys: KeySpace) -> str:
    """The id of the one open alert."""
    (alert_id,) = client.hkeys(keys.alerts_open)
    return str(alert_id)


def test_flushes_are_scheduled_at_most_a_group_interval_ahead_and_an_early_one_waits(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A level 1 hour away is polled every group_interval: a flush that runs before its time
    tells nobody and asks for the same time again, so a jump of the clock (a drill) is seen at
    the next poll rather than after the whole countdown."""
    channels = {n: ScriptedChannel(n) for n in ("email", "slack", "console")}
    store = AlertStore(client, keys, GroupTiming(group_interval_s=60.0), server_clock=clock)
    throttle = NotificationThrottle(client, keys, server_clock=clock)
    escalator = Escalator(channels, throttle, DeliveryStats(client, keys))
    policy = policy_from_mapping(
        {"rules": [{"name": "slow", "group_wait_s": 3600, "levels": [{"channels": ["email"]}]}]}
    )
    escalation = EscalationService(store, policy, escalator, clock)
    (first,) = escalation.note(failure(1, severity="medium"))
    assert (first.countdown_s, first.kwargs["at"]) == (60.0, clock.now_s() + 3600.0)
    clock.advance(60.0)
    early, report, (again,) = escalation.flush(**first.kwargs)
    assert (early.action, early.alert_id, report, again.kwargs, again.countdown_s) == (
        "wait",
        escalation_alert_id(client, keys),
        None,
        first.kwargs,
        60.0,
    )
    clock.advance(3600.0)  # the drill's jump
    told, report, _ = escalation.flush(**again.kwargs)
    assert told.action == "notify"
    assert report is not None and report.delivered_to == ("email",)


def test_the_sweep_restarts_a_chain_of_flushes_that_was_lost(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """The flush after a notification was never published: 30 s late it is left alone (it may
    be queued), more than SWEEP_GRACE_S late the sweep publishes it for the time the alert
    expects; it runs as the lost one would have; once the chain runs again nothing is swept;
    and the lost flush turning up after all answers stale."""
    channels = {n: ScriptedChannel(n) for n in ("email", "slack", "sms", "console")}
    escalation = service(client, keys, clock, channels)
    (first,) = escalation.note(failure(1))
    _, _, (lost,) = escalation.flush(**first.kwargs)
    clock.advance(lost.countdown_s + 30.0)
    assert escalation.sweep() == []
    clock.advance(SWEEP_GRACE_S)
    (restarted,) = escalation.sweep()
    assert (restarted.kind, restarted.countdown_s, restarted.kwargs) == ("flush", 0.0, lost.kwargs)
    assert escalation.note(failure(2)) == []  # still failing: the alert stays open
    decided, _, (following,) = escalation.flush(**restarted.kwargs)
    assert (decided.action, following.kind, following.countdown_s) == ("none", "flush", 300.0)
    assert escalation.sweep() == []
    late, _, upcoming = escalation.flush(**lost.kwargs)
    assert (late.action, upcoming) == ("stale", [])


def test_a_burst_of_1000_failures_sends_exactly_the_plan_limit_and_reports_the_rest(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """1,000 critical failures at one instant, each of its own component (1,000 alerts, none
    grouped with another): exactly 5 notifications go out (critical: 5 per 5 minutes), the
    other 995 are counted suppressed; the first one out once the window has passed says 995
    were held back."""
    channels = {n: ScriptedChannel(n) for n in ("email", "slack", "sms", "console")}
    escalation = service(client, keys, clock, channels)
    flushes = []
    for n in range(1000):
        data = failure(n)
        data["component"] = f"desk-{n}"
        (flush,) = escalation.note(data)
        flushes.append(flush)
    reports = [escalation.flush(**f.kwargs)[1] for f in flushes]
    assert sum(1 for r in reports if r is not None and r.sent) == 5
    assert [len(channels[n].sent) for n in ("email", "slack", "sms")] == [5, 5, 5]
    stats = DeliveryStats(client, keys).snapshot()
    assert stats["notifications_suppressed_total|rate_limited"] == 995
    clock.advance(300.0)
    late = failure(1000)
    late["component"] = "desk-1000"
    (flush,) = escalation.note(late)
    _, report, _ = escalation.flush(**flush.kwargs)
    assert report is not None and report.sent
    assert report.held_back == 995
    assert (
        "995 more notifications of this kind were held back"
        in render.email(channels["email"].sent[-1]).text
    )
