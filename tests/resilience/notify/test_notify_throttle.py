"""Notification rate limits shared in Redis (resilience.notify.throttle), on the real Redis."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from resilience.errors import ConfigurationError
from resilience.notify.model import Notification
from resilience.notify.throttle import (
    DEFAULT_LIMITS,
    SEVERITY_CLASS,
    NotificationThrottle,
    ThrottleLimit,
)
from resilience.policy.context import ErrorNotificationData
from resilience.policy.retry import ErrorSeverity
from resilience.storage.clock import ManualClock
from resilience.storage.connection import connect
from resilience.storage.keys import KeySpace


def note(severity: str = "critical", error_type: str = "OrderExecutionError") -> Notification:
    """A notification of one failure of ``severity`` and ``error_type``."""
    data: ErrorNotificationData = {
        "severity": severity,
        "priority": "P1",
        "title": f"{error_type} in trading: submit_order",
        "error_type": error_type,
        "error_id": "err-1",
        "message": "broker answered 503",
        "component": "trading",
        "operation": "submit_order",
        "task_name": "tasks.submit_order",
        "occurred_at": "2026-11-29T03:00:00+00:00",
    }
    return Notification.from_failure(data)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def throttle(client: redis.Redis, keys: KeySpace, clock: ManualClock) -> NotificationThrottle:
    return NotificationThrottle(client, keys, server_clock=clock)


def test_the_plans_limits_by_default() -> None:
    """critical 5 per 5 min, error 10 per 15 min, warning 20 per hour; CRITICAL is critical,
    HIGH is error, MEDIUM and LOW are warning."""
    assert {k: (v.limit, v.window_s) for k, v in DEFAULT_LIMITS.items()} == {
        "critical": (5, 300.0),
        "error": (10, 900.0),
        "warning": (20, 3600.0),
    }
    assert dict(SEVERITY_CLASS) == {
        ErrorSeverity.CRITICAL: "critical",
        ErrorSeverity.HIGH: "error",
        ErrorSeverity.MEDIUM: "warning",
        ErrorSeverity.LOW: "warning",
    }


@pytest.mark.parametrize(
    ("severity", "allowed"), [("critical", 5), ("high", 10), ("medium", 20), ("low", 20)]
)
def test_a_burst_of_1000_sends_exactly_the_limit_and_counts_the_rest(
    throttle: NotificationThrottle, severity: str, allowed: int
) -> None:
    """1,000 notifications at one instant: exactly the limit go out, the other 1,000 - limit
    are held back and counted."""
    decisions = [throttle.admit(note(severity)) for _ in range(1000)]
    assert sum(d.sent for d in decisions) == allowed
    assert all(d.sent for d in decisions[:allowed])
    assert [d.held_back for d in decisions[allowed:]] == list(range(1, 1001 - allowed))


def test_the_next_one_out_carries_what_was_held_back(
    throttle: NotificationThrottle, clock: ManualClock
) -> None:
    """Once the window lets one through, it says how many were held back (then the count
    starts again from zero)."""
    for _ in range(5):
        assert throttle.admit(note()).sent
    held = [throttle.admit(note()) for _ in range(7)]
    assert [d.sent for d in held] == [False] * 7
    assert held[-1].retry_after_s == 300.0
    clock.advance(300.0)
    first_out = throttle.admit(note())
    assert (first_out.sent, first_out.held_back) == (True, 7)
    assert throttle.admit(note()).held_back == 0


def test_the_window_slides(throttle: NotificationThrottle, clock: ManualClock) -> None:
    """At most 5 in any 300 s window: one a minute goes out forever; a sixth within the
    window waits until the oldest leaves it."""
    for minute in range(5):
        assert throttle.admit(note()).sent, minute
        clock.advance(60.0)
    assert throttle.admit(note()).sent  # the first left the window exactly now
    refused = throttle.admit(note())
    assert (refused.sent, refused.retry_after_s) == (False, 60.0)
    clock.advance(59.999)
    assert not throttle.admit(note()).sent
    clock.advance(0.001)
    assert throttle.admit(note()).sent


def test_limits_are_per_severity_class_and_error_type(throttle: NotificationThrottle) -> None:
    """A full critical limit of one error type holds back neither another error type nor
    another severity class of the same type."""
    for _ in range(6):
        throttle.admit(note("critical", "OrderExecutionError"))
    assert not throttle.admit(note("critical", "OrderExecutionError")).sent
    assert throttle.admit(note("critical", "MarketDataError")).sent
    assert throttle.admit(note("high", "OrderExecutionError")).sent


def test_workers_racing_send_exactly_the_limit(
    redis_url: str, keys: KeySpace, clock: ManualClock
) -> None:
    """16 threads, each with its own client and throttle, 50 notifications each at one
    instant: exactly 5 go out fleet-wide and 795 are counted held back."""
    results: list[Any] = []
    lock = threading.Lock()

    def worker() -> None:
        own = connect(redis_url)
        try:
            throttle = NotificationThrottle(own, keys, server_clock=clock)
            mine = [throttle.admit(note()) for _ in range(50)]
        finally:
            own.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 800
    assert sum(d.sent for d in results) == 5
    assert max(d.held_back for d in results) == 795


def test_without_redis_the_notification_goes_out(keys: KeySpace) -> None:
    """Redis unreachable: sent (degraded, nothing counted) rather than a person not told."""
    dead = connect("redis://127.0.0.1:1/0", socket_timeout_s=0.2, connect_timeout_s=0.2, retries=0)
    try:
        decision = NotificationThrottle(dead, keys).admit(note())
    finally:
        dead.close()
    assert (decision.sent, decision.held_back, decision.degraded) == (True, 0, True)


def test_limits_are_validated(client: redis.Redis, keys: KeySpace) -> None:
    """A limit below 1, a fractional or boolean limit, a window <= 0 or a missing severity
    class is a ConfigurationError naming the problem."""
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigurationError, match="whole number"):
            ThrottleLimit(limit=bad, window_s=60.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="> 0 seconds"):
        ThrottleLimit(limit=1, window_s=0.0)
    with pytest.raises(ConfigurationError, match="warning"):
        NotificationThrottle(client, keys, {"critical": ThrottleLimit(5, 300.0)})
