"""Telling receivers that track incidents (PagerDuty) that an alert was acknowledged: the alert
store's notice, the escalator's sends, the service's retries, and the rendered events."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import redis

from resilience.notify import render
from resilience.notify.alert_store import AlertStore, GroupTiming
from resilience.notify.channel import Delivery, FailureReason
from resilience.notify.escalation_policy import EscalationLevel, EscalationPolicy, EscalationRule
from resilience.notify.escalator import DeliveryStats, Escalator
from resilience.notify.model import NotificationStatus
from resilience.notify.service import EscalationService
from resilience.notify.throttle import NotificationThrottle
from resilience.policy.context import ErrorNotificationData
from resilience.storage.clock import ManualClock
from resilience.storage.keys import KeySpace
from tests.builders import final_failure
from tests.fakes.channels import ScriptedChannel

GROUP = "OrderExecutionError:trading"
RULE = EscalationRule(
    name="orders",
    levels=(
        EscalationLevel(0.0, ("email",), fallback=("pagerduty", "console")),
        EscalationLevel(600.0, ("pagerduty", "slack")),
    ),
)
CHANNELS = ("email", "slack", "pagerduty", "console")


def failure(n: int) -> ErrorNotificationData:
    return final_failure(n, severity="high", priority="P2")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(client: redis.Redis, keys: KeySpace, clock: ManualClock) -> AlertStore:
    return AlertStore(client, keys, GroupTiming(group_wait_s=0.0), server_clock=clock)


def build_service(
    client: redis.Redis,
    keys: KeySpace,
    clock: ManualClock,
    store: AlertStore,
    channels: dict[str, ScriptedChannel],
) -> EscalationService:
    throttle = NotificationThrottle(client, keys, server_clock=clock)
    escalator = Escalator(channels, throttle, DeliveryStats(client, keys), retry_s=7.0)
    return EscalationService(store, EscalationPolicy(rules=(), default=RULE), escalator, clock)


def told_level_0(store: AlertStore, clock: ManualClock) -> str:
    """An alert of two failures, told at level 0; its id."""
    noted = store.note(failure(1), RULE)
    store.note(failure(2), RULE)
    clock.set(noted.flush_at_s)
    assert store.flush(GROUP, RULE, noted.flush_at_s).action == "notify"
    return noted.alert_id


def test_the_notice_exists_only_for_an_open_acknowledged_alert(
    store: AlertStore, clock: ManualClock
) -> None:
    """Unknown or still firing: no notice. Acknowledged: the alert's count and examples as an
    acknowledged notification, its rule, and the levels told so far."""
    assert store.acknowledged_notice("no-such-alert") is None
    alert_id = told_level_0(store, clock)
    assert store.acknowledged_notice(alert_id) is None
    assert store.ack(alert_id)
    notice = store.acknowledged_notice(alert_id)
    assert notice is not None
    assert (notice.rule, notice.levels_told) == ("orders", range(1))
    n = notice.notification
    assert (n.status, n.key, n.count, len(n.examples)) == (
        NotificationStatus.ACKNOWLEDGED,
        GROUP,
        2,
        2,
    )
    assert n.title == "[ACKNOWLEDGED] OrderExecutionError in trading"


def test_only_pagerduty_among_the_told_levels_channels_and_fallbacks_is_told(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, store: AlertStore
) -> None:
    """Level 0 (email, falling back to PagerDuty) was told: PagerDuty, its fallback, gets the
    acknowledgement; email, Slack and the console get nothing; it is counted as a delivery."""
    channels = {name: ScriptedChannel(name) for name in CHANNELS}
    service = build_service(client, keys, clock, store, channels)
    alert_id = told_level_0(store, clock)
    assert store.ack(alert_id)
    report, upcoming = service.acknowledge(alert_id)
    assert report is not None and report.delivered_to == ("pagerduty",)
    assert upcoming == []
    assert [n.status for n in channels["pagerduty"].sent] == [NotificationStatus.ACKNOWLEDGED]
    assert [len(channels[name].sent) for name in ("email", "slack", "console")] == [0, 0, 0]
    stats = DeliveryStats(client, keys).snapshot()
    assert stats["notifications_total|pagerduty"] == 1


def test_an_alert_no_longer_acknowledged_and_open_tells_nobody(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, store: AlertStore
) -> None:
    channels = {name: ScriptedChannel(name) for name in CHANNELS}
    service = build_service(client, keys, clock, store, channels)
    alert_id = told_level_0(store, clock)
    assert service.acknowledge(alert_id) == (None, [])
    assert all(not channel.sent for channel in channels.values())


def test_a_transient_failure_to_tell_pagerduty_is_retried(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, store: AlertStore
) -> None:
    """PagerDuty answering 429 with Retry-After 12: one retry of the acknowledgement, after
    12 s; a 5xx without Retry-After: after the escalator's first retry delay."""
    for answer, after_s in (
        (Delivery.failed("pagerduty", FailureReason.RATE_LIMITED, "429", 0.01, 12.0), 12.0),
        (Delivery.failed("pagerduty", FailureReason.SERVER_ERROR, "503", 0.01), 7.0),
    ):
        channels = {name: ScriptedChannel(name) for name in CHANNELS}
        channels["pagerduty"] = ScriptedChannel("pagerduty", answer)
        service = build_service(client, keys, clock, store, channels)
        alert_id = told_level_0(store, clock)
        assert store.ack(alert_id)
        _, (retry,) = service.acknowledge(alert_id)
        assert (retry.kind, retry.countdown_s, retry.kwargs["channel"]) == (
            "retry",
            after_s,
            "pagerduty",
        )
        assert retry.kwargs["notification"]["status"] == "acknowledged"
        client.delete(keys.alert(GROUP), keys.alerts_open)


def test_the_acknowledged_notice_renders_on_every_channel(
    store: AlertStore, clock: ManualClock
) -> None:
    """PagerDuty: an acknowledge event naming the incident by its dedup_key alone (as resolve
    does); the others say it was acknowledged and that escalation stopped."""
    alert_id = told_level_0(store, clock)
    store.ack(alert_id)
    notice = store.acknowledged_notice(alert_id)
    assert notice is not None
    n = notice.notification
    trigger = render.pagerduty(replace(n, status=NotificationStatus.FIRING), "routing-key")
    assert trigger["event_action"] == "trigger"
    assert render.pagerduty(n, "routing-key") == {
        "routing_key": "routing-key",
        "event_action": "acknowledge",
        "dedup_key": trigger["dedup_key"],
    }
    line = "no further escalation"
    assert line in render.email(n).text
    assert line in render.email(n).html
    assert line in json.dumps(render.slack(n))
    assert render.sms(n).endswith("acknowledged, no further escalation")
    assert render.webhook(n)["status"] == "acknowledged"
