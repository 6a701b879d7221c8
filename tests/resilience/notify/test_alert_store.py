"""Open alerts, grouping and escalation levels in Redis (resilience.notify.alert_store)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from resilience.errors import ConfigurationError
from resilience.notify.alert_store import AlertStore, GroupTiming
from resilience.notify.escalation_policy import DEFAULT_POLICY, EscalationLevel, EscalationRule
from resilience.notify.model import MAX_EXAMPLES, NotificationStatus
from resilience.policy.context import ErrorNotificationData
from resilience.policy.retry import ErrorSeverity
from resilience.storage.clock import ManualClock
from resilience.storage.keys import KeySpace

TIMING = GroupTiming(
    group_wait_s=30.0, group_interval_s=300.0, repeat_interval_s=4 * 3600.0, resolve_after_s=300.0
)
ONE_LEVEL = EscalationRule(name="high", levels=(EscalationLevel(0.0, ("email", "slack")),))
TWO_LEVELS = EscalationRule(
    name="orders",
    levels=(EscalationLevel(0.0, ("slack",)), EscalationLevel(900.0, ("pagerduty", "slack"))),
)


def failure(n: int = 1, **changes: Any) -> ErrorNotificationData:
    """Final failure number ``n`` of an order."""
    data: ErrorNotificationData = {
        "severity": "high",
        "priority": "P2",
        "title": "OrderExecutionError in trading: submit_order",
        "error_type": "OrderExecutionError",
        "error_id": f"err-{n}",
        "message": f"broker answered 503 (order {n})",
        "component": "trading",
        "operation": "submit_order",
        "task_name": "tasks.submit_order",
        "occurred_at": "2026-11-29T03:00:00+00:00",
        "dead_letter_id": f"dl-{n}",
        "attempts": 5,
    }
    data.update(changes)  # type: ignore[typeddict-item]
    return data


GROUP = "OrderExecutionError:trading"


def channels_of(rule: EscalationRule, levels: range) -> list[str]:
    """The channels of the given levels of ``rule``, each once, in order."""
    channels: list[str] = []
    for index in levels:
        channels.extend(c for c in rule.levels[index].channels if c not in channels)
    return channels


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(client: redis.Redis, keys: KeySpace, clock: ManualClock) -> AlertStore:
    return AlertStore(client, keys, TIMING, server_clock=clock)


def test_a_hundred_failures_within_group_wait_are_one_notification_of_count_100(
    store: AlertStore, clock: ManualClock
) -> None:
    """The first failure opens the alert and asks for a flush after group_wait; the 99 that
    follow within it are counted into the same alert; the flush tells level 0 once, count 100,
    with the first MAX_EXAMPLES as examples."""
    first = store.note(failure(1), ONE_LEVEL)
    assert (first.opened, first.flush_at_s) == (True, clock.now_s() + 30.0)
    for n in range(2, 101):
        clock.advance(0.1)
        again = store.note(failure(n), ONE_LEVEL)
        assert (again.opened, again.alert_id, again.flush_at_s) == (
            False,
            first.alert_id,
            first.flush_at_s,
        )
    clock.set(first.flush_at_s)
    flush = store.flush(GROUP, ONE_LEVEL, first.flush_at_s)
    assert (flush.action, list(flush.levels), flush.alert_id) == ("notify", [0], first.alert_id)
    assert flush.notification is not None
    assert flush.notification.count == 100
    assert [e.error_id for e in flush.notification.examples] == [
        f"err-{n}" for n in range(1, MAX_EXAMPLES + 1)
    ]
    assert flush.next_flush_at_s == first.flush_at_s + 300.0
    assert channels_of(ONE_LEVEL, flush.levels) == ["email", "slack"]


def test_a_group_still_failing_is_reminded_once_per_repeat_interval_with_the_total(
    store: AlertStore, clock: ManualClock
) -> None:
    """Alertmanager's timing with its defaults: the same failure every minute for 4 h 10 min
    is told once, then counted; the first flush 4 h after the notification reminds, once, with
    the count so far. (Before, each group_interval re-notified and no reminder was ever due.)"""
    noted = store.note(failure(1), ONE_LEVEL)
    clock.set(noted.flush_at_s)
    flush = store.flush(GROUP, ONE_LEVEL, noted.flush_at_s)
    assert (flush.action, flush.notification and flush.notification.count) == ("notify", 1)
    told_at, notes, sent = clock.now_s(), 1, []
    while clock.now_s() < told_at + 4 * 3600 + 600:
        clock.advance(60.0)
        notes += 1
        store.note(failure(notes), ONE_LEVEL)
        assert flush.next_flush_at_s is not None
        if clock.now_s() >= flush.next_flush_at_s:
            flush = store.flush(GROUP, ONE_LEVEL, flush.next_flush_at_s)
            if flush.action != "none":
                assert flush.notification is not None
                sent.append((flush.action, clock.now_s() - told_at, flush.notification.count))
    assert sent == [("repeat", 4 * 3600.0, 1 + 4 * 3600 // 60)]


def test_what_is_new_in_the_group_is_told_at_the_next_flush(
    store: AlertStore, clock: ManualClock
) -> None:
    """An operation failing in the group for the first time, and a rise of severity, are news:
    each is told at the next flush with the group's total; more of the same is not."""
    noted = store.note(failure(1), ONE_LEVEL)
    clock.set(noted.flush_at_s)
    flush = store.flush(GROUP, ONE_LEVEL, noted.flush_at_s)
    actions = []
    for changes in (
        {},
        {"operation": "cancel_order", "task_name": "tasks.cancel_order"},
        {"operation": "cancel_order", "task_name": "tasks.cancel_order"},
        {"severity": "critical"},
    ):
        clock.advance(60.0)
        store.note(failure(len(actions) + 2, **changes), ONE_LEVEL)
        assert flush.next_flush_at_s is not None
        clock.set(flush.next_flush_at_s)
        flush = store.flush(GROUP, ONE_LEVEL, flush.next_flush_at_s)
        actions.append((flush.action, flush.notification and flush.notification.count))
    assert actions == [("none", None), ("notify", 3), ("none", None), ("notify", 5)]


def test_an_unacknowledged_alert_reaches_the_next_level_at_its_delay(
    store: AlertStore, clock: ManualClock
) -> None:
    """Level 1 (900 s after opening) is told at exactly its delay, on its own channels, though
    the only failure was long before (before, the quiet group was resolved at 330 s and level 1
    was never told); the flushes before it send nothing new; the next one resolves it."""
    noted = store.note(failure(1), TWO_LEVELS)
    opened_at = noted.flush_at_s - 30.0
    clock.set(noted.flush_at_s)
    flush = store.flush(GROUP, TWO_LEVELS, noted.flush_at_s)
    assert (flush.action, list(flush.levels)) == ("notify", [0])
    steps = []
    while 1 not in flush.levels:
        assert flush.next_flush_at_s is not None
        clock.set(flush.next_flush_at_s)
        flush = store.flush(GROUP, TWO_LEVELS, flush.next_flush_at_s)
        steps.append((clock.now_s() - opened_at, flush.action))
    assert steps == [(330.0, "none"), (630.0, "none"), (900.0, "notify")]
    assert channels_of(TWO_LEVELS, flush.levels) == ["pagerduty", "slack"]
    assert flush.next_flush_at_s is not None
    clock.set(flush.next_flush_at_s)
    resolved = store.flush(GROUP, TWO_LEVELS, flush.next_flush_at_s)
    assert (resolved.action, list(resolved.levels)) == ("resolve", [0, 1])


def test_an_alert_acknowledged_before_anyone_was_told_is_resolved_quietly(
    store: AlertStore, clock: ManualClock
) -> None:
    """Acknowledged while its only level (5 minutes) was still ahead: nobody is told, and once
    the group is quiet the alert is resolved with no level to tell, ending its chain."""
    high = DEFAULT_POLICY.rules[2]
    noted = store.note(failure(1), high)
    assert store.ack(noted.alert_id) is True
    at: float | None = noted.flush_at_s
    actions = []
    while at is not None and len(actions) < 10:
        clock.set(at)
        flush = store.flush(GROUP, high, at)
        actions.append((flush.action, list(flush.levels)))
        at = flush.next_flush_at_s
    assert actions == [("none", []), ("resolve", [])]
    assert store.open_alerts() == []


def test_an_acknowledged_alert_does_not_reach_the_next_level(
    store: AlertStore, clock: ManualClock
) -> None:
    """Acknowledged before level 1's time: the flush at 900 s tells nobody new, and no later
    flush does either; news of the group still reaches the level already told."""
    noted = store.note(failure(1), TWO_LEVELS)
    clock.set(noted.flush_at_s)
    flush = store.flush(GROUP, TWO_LEVELS, noted.flush_at_s)
    assert store.ack(noted.alert_id) is True
    seen_levels: set[int] = set()
    for _ in range(10):
        assert flush.next_flush_at_s is not None
        clock.set(flush.next_flush_at_s)
        store.note(failure(2, operation="cancel_order"), TWO_LEVELS)
        flush = store.flush(GROUP, TWO_LEVELS, flush.next_flush_at_s)
        seen_levels.update(flush.levels)
    assert clock.now_s() - (noted.flush_at_s - 30.0) > 900.0
    assert seen_levels == {0}
    assert [a.status for a in store.open_alerts()] == ["acknowledged"]


def test_a_high_alert_waits_for_its_levels_delay(store: AlertStore, clock: ManualClock) -> None:
    """The default HIGH rule tells email and Slack after 5 minutes: the group_wait flush sends
    nothing and schedules the next flush at the level's time."""
    high = DEFAULT_POLICY.rules[2]
    failure_data = failure(1, error_type="MarketDataError", component="market_data")
    noted = store.note(failure_data, high)
    clock.set(noted.flush_at_s)
    group = "MarketDataError:market_data"
    waiting = store.flush(group, high, noted.flush_at_s)
    assert (waiting.action, waiting.next_flush_at_s) == ("none", noted.flush_at_s - 30.0 + 300.0)
    assert waiting.next_flush_at_s is not None
    clock.set(waiting.next_flush_at_s)
    told = store.flush(group, high, waiting.next_flush_at_s)
    assert (told.action, channels_of(high, told.levels)) == ("notify", ["email", "slack"])


def test_a_critical_alert_does_not_wait(store: AlertStore, clock: ManualClock) -> None:
    """The default critical rule has no group_wait: its first flush is due at once."""
    critical = DEFAULT_POLICY.rules[0]
    noted = store.note(failure(1, severity="critical"), critical)
    assert noted.flush_at_s == clock.now_s()
    flush = store.flush(GROUP, critical, noted.flush_at_s)
    assert flush.notification is not None
    assert flush.notification.severity is ErrorSeverity.CRITICAL
    assert channels_of(critical, flush.levels) == ["email", "slack", "sms"]


def test_a_quiet_group_is_resolved_and_the_next_failure_opens_a_new_alert(
    store: AlertStore, clock: ManualClock
) -> None:
    """No failure for resolve_after once everything was told: a resolved notice to the levels
    told, the chain ends, the alert leaves the open list; the next failure opens a new one."""
    noted = store.note(failure(1), ONE_LEVEL)
    clock.set(noted.flush_at_s)
    flush = store.flush(GROUP, ONE_LEVEL, noted.flush_at_s)
    assert flush.next_flush_at_s is not None
    clock.set(flush.next_flush_at_s)
    resolved = store.flush(GROUP, ONE_LEVEL, flush.next_flush_at_s)
    assert (resolved.action, list(resolved.levels), resolved.next_flush_at_s) == (
        "resolve",
        [0],
        None,
    )
    assert resolved.notification is not None
    assert resolved.notification.status is NotificationStatus.RESOLVED
    assert store.open_alerts() == []
    again = store.note(failure(2), ONE_LEVEL)
    assert again.opened and again.alert_id != noted.alert_id


def test_a_stale_or_duplicate_flush_changes_nothing(store: AlertStore, clock: ManualClock) -> None:
    """A flush scheduled for another time than the alert expects (a duplicate, an old one)
    answers stale and schedules nothing: one chain of flushes per alert."""
    noted = store.note(failure(1), ONE_LEVEL)
    clock.set(noted.flush_at_s)
    assert store.flush(GROUP, ONE_LEVEL, noted.flush_at_s - 1.0).action == "stale"
    real = store.flush(GROUP, ONE_LEVEL, noted.flush_at_s)
    assert real.action == "notify"
    duplicate = store.flush(GROUP, ONE_LEVEL, noted.flush_at_s)
    assert (duplicate.action, duplicate.next_flush_at_s) == ("stale", None)


def test_ack_and_the_open_list(store: AlertStore, clock: ManualClock) -> None:
    """open_alerts lists each open alert; ack answers True for an open one, False for an
    unknown id."""
    first = store.note(failure(1), ONE_LEVEL)
    clock.advance(1.0)
    second = store.note(
        failure(1, error_type="MarketDataError", component="market_data"), ONE_LEVEL
    )
    listed = store.open_alerts()
    assert [(a.alert_id, a.status, a.count, a.level) for a in listed] == [
        (first.alert_id, "firing", 1, -1),
        (second.alert_id, "firing", 1, -1),
    ]
    assert store.ack(first.alert_id) is True
    assert store.ack(first.alert_id) is True  # already acknowledged
    assert store.ack("no-such-alert") is False
    assert [a.status for a in store.open_alerts()] == ["acknowledged", "firing"]


def test_severity_is_the_worst_seen(store: AlertStore, clock: ManualClock) -> None:
    """A critical failure joining a high group makes the alert critical."""
    noted = store.note(failure(1), ONE_LEVEL)
    store.note(failure(2, severity="critical"), ONE_LEVEL)
    clock.set(noted.flush_at_s)
    flush = store.flush(GROUP, ONE_LEVEL, noted.flush_at_s)
    assert flush.notification is not None
    assert flush.notification.severity is ErrorSeverity.CRITICAL


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"group_wait_s": -1.0}, "group_wait_s is seconds >= 0"),
        ({"repeat_interval_s": True}, "repeat_interval_s is seconds >= 0"),
        ({"group_interval_s": 0.0}, "group_interval_s must be > 0"),
    ],
)
def test_grouping_times_are_validated(changes: dict[str, Any], message: str) -> None:
    """A negative, boolean or (for group_interval) zero time is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match=message):
        GroupTiming(**changes)
