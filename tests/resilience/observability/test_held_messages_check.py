"""What health says of the messages workers hold: renewed, a dead worker's, or abandoned."""

from __future__ import annotations

from resilience.observability.health import HealthStatus
from resilience.observability.held_messages import HeldMessages, held_messages_check


def held(past_timeout: int, oldest_s: float, count: int = 3) -> HeldMessages:
    return HeldMessages(
        held=count, past_timeout=past_timeout, oldest_lease_age_s=oldest_s, visibility_timeout_s=60
    )


def test_leases_renewed_within_the_timeout_are_healthy() -> None:
    check = held_messages_check(held(0, 14.0), critical_after_s=90)
    assert (check.name, check.status, check.observed, check.threshold) == (
        "held_messages",
        HealthStatus.HEALTHY,
        14.0,
        60,
    )
    assert check.message == "3 messages held by live workers"


def test_a_dead_workers_messages_warn_until_the_critical_age() -> None:
    check = held_messages_check(held(2, 75.04), critical_after_s=90)
    assert check.status is HealthStatus.WARNING
    assert check.message.startswith("2 messages held by a worker that stopped renewing them 75 s")
    assert check.observed == 75.0


def test_messages_no_worker_restored_are_critical_and_say_what_to_do() -> None:
    check = held_messages_check(held(2, 90.0), critical_after_s=90)
    assert (check.status, check.threshold) == (HealthStatus.CRITICAL, 90)
    assert "start a worker on this broker" in check.message
