"""Retry policy from the error hierarchy, applied by real workers against real Redis."""

from __future__ import annotations

from datetime import datetime

import pytest

from resilience.chaos import ChaosRule
from tests.integration.harness import Deployment, order_kwargs, wait_for

pytestmark = pytest.mark.integration


def _ts(record: dict[str, object]) -> float:
    return datetime.fromisoformat(str(record["timestamp"])).timestamp()


def test_rate_limited_order_waits_retry_after_then_succeeds(deployment: Deployment) -> None:
    """A 429 with Retry-After waits for the later of the Retry-After and the shared limiter's
    next slot, twice, spending no attempt (recovered by limiter_slot), then succeeds."""
    deployment.runtime.chaos.inject(
        ChaosRule("broker.submit_order", "http:429", count=2, retry_after_s=1)
    )
    deployment.start_workers()
    order = order_kwargs()
    deployment.submit(order)
    wait_for(lambda: order["client_order_id"] in deployment.booked(), 30, "the order to be booked")
    # The worker logs the placement just after booking it.
    wait_for(lambda: len(deployment.log_events("order_placed")) == 1, 10, "the placement log")

    failures = deployment.log_events("task_failed")
    assert [f["error_type"] for f in failures] == ["RateLimitError", "RateLimitError"]
    assert [f["action"] for f in failures] == ["defer", "defer"]
    assert [f["attempt"] for f in failures] == [1, 1]
    # Never sooner than the Retry-After; the account limiter (200 a minute) adds at most 0.3 s.
    assert all(1.0 <= float(f["countdown_s"]) <= 1.5 for f in failures)
    tried = deployment.log_events("recovery_tried")
    assert [(t["strategy"], t["outcome"]) for t in tried] == [("limiter_slot", "recovered")] * 2
    placed = deployment.log_events("order_placed")
    assert len(placed) == 1
    assert _ts(placed[0]) - _ts(failures[1]) >= float(failures[1]["countdown_s"]) - 0.05
    totals = deployment.runtime.resilience.outcomes.totals()
    assert (totals["deferred"], totals.get("retried", 0)) == (2, 0)
    assert totals["recovered"] == 1
    assert deployment.accepted_counts()[order["client_order_id"]] == 1


def test_insufficient_funds_is_dead_lettered_after_exactly_one_attempt(
    deployment: Deployment,
) -> None:
    """An order the account cannot fund runs once and goes to the dead-letter store."""
    deployment.start_workers()
    order = order_kwargs("NVDA", 1_000_000)
    task_id = deployment.submit(order)
    entry = deployment.dead_letter(task_id, 30)
    assert entry.error_type == "InsufficientFundsError"
    assert entry.reason == "not retryable"
    assert len(entry.attempts) == 1
    assert entry.attempts[0]["action"] == "dead_letter"
    assert entry.idempotency_key == order["client_order_id"]
    assert entry.queue == "trading"
    assert deployment.paper.counters().get("rejected") == 1
    assert "retried" not in deployment.runtime.resilience.outcomes.totals()
    assert order["client_order_id"] not in deployment.booked()


def test_transient_failures_beyond_max_attempts_dead_letter_with_full_history(
    deployment: Deployment,
) -> None:
    """503 on every attempt: 5 attempts (TradingClientError policy), then a dead letter
    holding each attempt's time, error, countdown and worker."""
    deployment.runtime.chaos.inject(ChaosRule("broker.submit_order", "http:503"))
    deployment.start_workers()
    order = order_kwargs()
    task_id = deployment.submit(order)
    entry = deployment.dead_letter(task_id, 60)
    assert entry.error_type == "TradingClientError"
    assert entry.reason == "attempts exhausted (5 of 5)"
    assert [a["attempt"] for a in entry.attempts] == [1, 2, 3, 4, 5]
    assert [a["action"] for a in entry.attempts] == ["retry"] * 4 + ["dead_letter"]
    times = [datetime.fromisoformat(a["at"]).timestamp() for a in entry.attempts]
    countdowns = [float(a["countdown_s"]) for a in entry.attempts]
    # Exponential(0.5 s, x2) with equal jitter: in [d/2, d] for d = 0.5, 1, 2, 4.
    for countdown, full in zip(countdowns[:4], (0.5, 1.0, 2.0, 4.0), strict=True):
        assert full / 2 <= countdown <= full
    for earlier, later, countdown in zip(times, times[1:], countdowns, strict=False):
        assert later - earlier >= countdown - 0.05
    assert all(a["hostname"] for a in entry.attempts)
    assert all(a["error_type"] == "TradingClientError" for a in entry.attempts)
    assert entry.traceback is not None and "ChaosHTTPError" in entry.traceback
    assert deployment.paper.counters().get("accepted", 0) == 0


def test_stale_order_is_dead_lettered_and_never_executed(deployment: Deployment) -> None:
    """An order whose valid_until has passed is dead-lettered as StaleOrderError unexecuted."""
    deployment.start_workers()
    order = order_kwargs(ttl_s=-5)
    task_id = deployment.submit(order)
    entry = deployment.dead_letter(task_id, 30)
    assert entry.error_type == "StaleOrderError"
    assert deployment.paper.list_orders() == []
    assert deployment.paper.counters() == {}


def test_market_closed_defers_without_spending_attempts(deployment: Deployment) -> None:
    """MarketClosedError defers (twice here) without spending an attempt, then the order runs;
    a later transient failure still has its full attempt budget."""
    deployment.runtime.chaos.inject(
        ChaosRule("broker.submit_order", "MarketClosedError", count=2, retry_after_s=0.3)
    )
    deployment.start_workers()
    order = order_kwargs()
    deployment.submit(order)
    wait_for(lambda: order["client_order_id"] in deployment.booked(), 30, "the order to be booked")

    failures = deployment.log_events("task_failed")
    assert [(f["error_type"], f["action"]) for f in failures] == [
        ("MarketClosedError", "defer"),
        ("MarketClosedError", "defer"),
    ]
    assert [f["attempt"] for f in failures] == [1, 1]
    assert all(float(f["countdown_s"]) == 0.3 for f in failures)
    totals = deployment.runtime.resilience.outcomes.totals()
    assert totals["deferred"] == 2
    assert "retried" not in totals


def test_market_closed_past_the_deadline_is_dead_lettered(deployment: Deployment) -> None:
    """A deferral that would end after the order's valid_until dead-letters it instead."""
    deployment.runtime.chaos.inject(
        ChaosRule("broker.submit_order", "MarketClosedError", retry_after_s=3600)
    )
    deployment.start_workers()
    task_id = deployment.submit(order_kwargs(ttl_s=60))
    entry = deployment.dead_letter(task_id, 30)
    assert entry.error_type == "MarketClosedError"
    assert entry.reason == "deadline passes before it may run again"
    assert deployment.booked() == set()


def test_final_failure_publishes_an_escalation(deployment: Deployment) -> None:
    """A dead letter publishes tasks.escalate on the escalation queue with its id, scrubbed."""
    deployment.start_workers()
    order = order_kwargs("NVDA", 1_000_000)
    task_id = deployment.submit(order)
    wait_for(lambda: len(deployment.log_events("escalation")) == 1, 30, "the escalation")
    (escalation,) = deployment.log_events("escalation")
    assert escalation["dead_letter_id"] == task_id
    assert escalation["error_type"] == "InsufficientFundsError"
    assert escalation["idempotency_key"] == order["client_order_id"]
    assert escalation["severity"] == "high"
    assert escalation["priority"] == "P2"
