"""Sending a flush's decision: channels, rate limits, fallback, retries, counts."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import redis
from redis.client import Pipeline

from resilience.notify.alert_store import Flush
from resilience.notify.channel import Delivery, FailureReason
from resilience.notify.escalation_policy import EscalationLevel, EscalationRule
from resilience.notify.escalator import (
    DEFAULT_RESOLVED_TO,
    DEFAULT_RETRY_S,
    LATENCY_BUCKETS_S,
    DeliveryStats,
    Escalator,
    Retry,
)
from resilience.notify.model import (
    Notification,
    NotificationStatus,
    notification_from_json,
    notification_to_json,
)
from resilience.notify.throttle import NotificationThrottle
from resilience.policy.context import ErrorNotificationData
from resilience.storage.clock import ManualClock
from resilience.storage.keys import KeySpace
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
    """A channel the policy names but the deployment lacks fails as not configured (counted
    under that reason, not retried); its level's fallback delivers."""
    del rig.channels["sms"]
    report = rig.escalator().send(flush(), RULE)
    sms = next(d for d in report.deliveries if d.channel == "sms")
    assert (sms.delivered, sms.reason, sms.detail) == (
        False,
        FailureReason.NOT_CONFIGURED,
        "not configured",
    )
    assert "webhook" in report.delivered_to
    assert report.retries == ()
    counts = rig.stats.snapshot()
    assert counts["notifications_failed_total|sms|not_configured"] == 1.0
    assert "notifications_failed_total|sms|client_error" not in counts


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


# --- resolved notices go only to the channels that want them ---------------------------------


def resolved_flush(levels: range = range(0, 1)) -> Flush:
    """The resolve flush of the group of :func:`flush`, for ``levels``."""
    note = Notification.from_failure(failure()).resolved()
    return Flush("resolve", levels, None, note, "a1")


def counted(stats: DeliveryStats) -> dict[str, float]:
    """The notification and failure counters (not the latency series)."""
    return {k: v for k, v in stats.snapshot().items() if k.startswith("notifications_")}


def test_a_resolved_notice_skips_sms_by_default(rig: Rig) -> None:
    """A resolved notice on a level of email, Slack and SMS reaches email and Slack; SMS is
    not sent it, nothing falls back for it and nothing is counted for it."""
    report = rig.escalator().send(resolved_flush(), RULE)
    assert report.sent and report.delivered_to == ("email", "slack")
    assert [len(rig.channels[n].sent) for n in ("email", "slack", "sms", "webhook", "console")] == [
        1,
        1,
        0,
        0,
        0,
    ]
    assert report.retries == ()
    assert counted(rig.stats) == {
        "notifications_total|email": 1.0,
        "notifications_total|slack": 1.0,
    }
    assert not any("|sms" in field for field in rig.stats.snapshot())


def test_a_firing_notification_ignores_resolved_to(rig: Rig) -> None:
    """With no channel wanting resolved notices, a firing notification still reaches email,
    Slack and SMS; the resolved notice after it reaches none and counts nothing."""
    escalator = Escalator(rig.channels, rig.throttle, rig.stats, resolved_to=frozenset())
    assert escalator.send(flush(), RULE).delivered_to == ("email", "slack", "sms")
    report = escalator.send(resolved_flush(), RULE)
    assert (report.sent, report.deliveries, report.retries) == (True, (), ())
    assert [len(rig.channels[n].sent) for n in ("email", "slack", "sms", "console")] == [1, 1, 1, 0]
    assert sum(v for k, v in counted(rig.stats).items() if k.startswith("notifications_total")) == 3


def test_resolved_to_is_given_per_channel(rig: Rig) -> None:
    """resolved_to {sms, console}: the resolved notice goes to SMS alone on level 0 and, on
    level 1, PagerDuty is skipped (no failure, so no fallback)."""
    escalator = Escalator(
        rig.channels, rig.throttle, rig.stats, resolved_to=frozenset({"sms", "console"})
    )
    report = escalator.send(resolved_flush(range(0, 2)), RULE)
    assert report.delivered_to == ("sms",)
    assert [len(rig.channels[n].sent) for n in ("email", "slack", "pagerduty", "console")] == [
        0,
        0,
        0,
        0,
    ]
    assert rig.channels["sms"].sent[0].status is NotificationStatus.RESOLVED


def test_a_fallback_that_does_not_want_the_resolved_notice_is_passed_over(rig: Rig) -> None:
    """Email failing on a resolved notice falls back past SMS (which does not want it) to the
    console; SMS is neither sent it nor counted as failed."""
    rule = EscalationRule(
        name="critical",
        levels=(EscalationLevel(0.0, ("email",), fallback=("sms", "console")),),
    )
    rig.channels["email"] = ScriptedChannel("email", failed("email", FailureReason.SERVER_ERROR))
    report = rig.escalator().send(resolved_flush(), rule)
    assert [(d.channel, d.delivered) for d in report.deliveries] == [
        ("email", False),
        ("console", True),
    ]
    assert report.retries == (Retry("email", DEFAULT_RETRY_S),)
    assert len(rig.channels["sms"].sent) == 0
    assert counted(rig.stats) == {
        "notifications_total|email": 1.0,
        "notifications_failed_total|email|server_error": 1.0,
        "notifications_total|console": 1.0,
    }


def test_the_default_resolved_to_is_every_channel_but_sms() -> None:
    """Email, Slack, the webhook, PagerDuty and the console want resolved notices; SMS not."""
    assert sorted(DEFAULT_RESOLVED_TO) == ["console", "email", "pagerduty", "slack", "webhook"]


# --- the latency histogram -------------------------------------------------------------------

LES = ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "+Inf")


def buckets(stats: DeliveryStats, channel: str) -> list[float]:
    """The channel's cumulative bucket counts, in the order of LES."""
    snapshot = stats.snapshot()
    return [snapshot[f"notification_latency_seconds_bucket|{channel}|{le}"] for le in LES]


def test_the_bucket_bounds_are_written_as_prometheus_does() -> None:
    """The le labels of LATENCY_BUCKETS_S are 0.05 ... 1 ... 30, +Inf."""
    assert len(LATENCY_BUCKETS_S) == len(LES)
    assert list(LATENCY_BUCKETS_S) == [float(le.replace("+Inf", "inf")) for le in LES]


def test_latencies_fill_cumulative_buckets_per_channel(client: redis.Redis, keys: KeySpace) -> None:
    """Email deliveries of 0.03, 0.05 (on the bound: counted in it), 0.2, 0.7, 3 and 45 s,
    one a failure: each bucket counts the deliveries at most its bound; count 6, sum 48.98;
    Slack's one delivery of 0.3 s has buckets of its own, created at 0 below it."""
    stats = DeliveryStats(client, keys)
    stats.record(
        [
            Delivery.ok("email", 0.03),
            Delivery.ok("email", 0.05),
            Delivery.ok("email", 0.2),
            Delivery.failed("email", FailureReason.TIMEOUT, "Timeout", 0.7),
            Delivery.ok("slack", 0.3),
        ]
    )
    stats.record([Delivery.ok("email", 3.0)])
    stats.record([Delivery.ok("email", 45.0)])
    assert buckets(stats, "email") == [2, 2, 3, 3, 4, 4, 5, 5, 5, 6]
    assert buckets(stats, "slack") == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    snapshot = stats.snapshot()
    assert snapshot["notification_latency_seconds_count|email"] == 6.0
    assert snapshot["notification_latency_seconds_sum|email"] == pytest.approx(48.98)
    assert snapshot["notification_latency_seconds_count|slack"] == 1.0
    assert (
        snapshot["notifications_total|email"]
        == snapshot["notification_latency_seconds_bucket|email|+Inf"]
    )


def test_a_send_records_its_latencies(rig: Rig) -> None:
    """A send whose email takes 0.4 s and Slack 2 s (failing over to the webhook in 0.01 s)
    puts each channel's latency in its buckets."""
    rig.channels["email"] = ScriptedChannel("email", Delivery.ok("email", 0.4))
    rig.channels["slack"] = ScriptedChannel(
        "slack", Delivery.failed("slack", FailureReason.TIMEOUT, "Timeout", 2.0)
    )
    rig.escalator().send(flush(), RULE)
    assert buckets(rig.stats, "email") == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    assert buckets(rig.stats, "slack") == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert buckets(rig.stats, "webhook") == [1] * 10


def test_recording_is_one_round_trip(
    client: redis.Redis, keys: KeySpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording three deliveries (with their 36 histogram fields) and a suppression sends one
    pipeline to Redis and no command on its own."""
    stats = DeliveryStats(client, keys)
    executed: list[int] = []
    direct: list[object] = []
    make_pipeline = client.pipeline

    def counting_pipeline(transaction: bool = True) -> Pipeline:
        pipe = make_pipeline(transaction=transaction)
        execute = pipe.execute

        def counted_execute(raise_on_error: bool = True) -> list[object]:
            executed.append(len(pipe.command_stack))
            return execute(raise_on_error)

        monkeypatch.setattr(pipe, "execute", counted_execute)
        return pipe

    monkeypatch.setattr(client, "pipeline", counting_pipeline)
    monkeypatch.setattr(client, "execute_command", lambda *a, **k: direct.append(a))
    stats.record(
        [Delivery.ok("email", 0.1), Delivery.ok("slack", 0.2), Delivery.ok("sms", 0.3)],
        suppressed="rate_limited",
    )
    assert executed == [3 * (3 + len(LES)) + 1]
    assert direct == []
