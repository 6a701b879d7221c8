"""Order integrity on real workers: deadlines cannot be bypassed, an idempotency key names one
order, and no order is both booked and dead-lettered."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from resilience.chaos import ChaosRule
from tests.integration.harness import Deployment, order_kwargs, wait_for

pytestmark = pytest.mark.integration

# Countdowns of a few seconds, so five attempts fit in a test.
FAST_RETRIES = {"ALCHEMISER_VISIBILITY_TIMEOUT_S": "6", "ALCHEMISER_MAX_COUNTDOWN_S": "4"}
# A retry budget that pays exactly one retry after a timeout, then refuses every other.
ONE_RETRY_BUDGET = json.dumps(
    {
        "broker.orders": {
            "breaker": False,
            "retry_budget": {
                "capacity": 10,
                "retry_cost": 10,
                "timeout_cost": 10,
                "success_refill": 0,
                "refill_per_s": 0,
            },
        },
        "broker.data": {"breaker": False, "retry_budget": False},
    }
)


def test_numeric_deadlines_are_dead_lettered_never_booked(deployment: Deployment) -> None:
    """``valid_until`` of 1, "1700000000" or 1700000000.0 is a ValidationError: one attempt,
    dead-lettered, never booked; a valid order after them is booked."""
    deployment.start_workers(concurrency=2)
    numeric: list[Any] = [1, "1700000000", 1700000000.0]
    bad = [order_kwargs(valid_until=value) for value in numeric]
    task_ids = [deployment.submit(kwargs) for kwargs in bad]
    for task_id in task_ids:
        entry = deployment.dead_letter(task_id, 60)
        assert entry.error_type == "ValidationError"
        assert "valid_until: " in entry.message
        assert "ISO-8601 datetime with a timezone" in entry.message
        assert len(entry.attempts) == 1
    good = order_kwargs()
    deployment.submit(good)
    wait_for(lambda: good["client_order_id"] in deployment.booked(), 30, "a valid order")
    assert deployment.booked() == {good["client_order_id"]}
    assert "retried" not in deployment.runtime.resilience.outcomes.totals()


def test_reused_client_order_id_for_another_order_is_a_conflict(deployment: Deployment) -> None:
    """AAPL 1 then MSFT 50 under the same client_order_id: the second is dead-lettered as an
    IdempotencyConflictError naming symbol and qty, the first stays the only accepted order,
    and an identical resend of the first still resolves as already placed."""
    deployment.start_workers(concurrency=1)
    first = order_kwargs("AAPL", 1)
    key = first["client_order_id"]
    deployment.submit(first)
    wait_for(lambda: key in deployment.booked(), 30, "the first order booked")

    conflicting = order_kwargs("MSFT", 50, client_order_id=key)
    entry = deployment.dead_letter(deployment.submit(conflicting), 30)
    assert entry.error_type == "IdempotencyConflictError"
    assert entry.severity == "high"
    assert len(entry.attempts) == 1
    assert f"client_order_id {key} already names a different order" in entry.message
    assert "symbol 'MSFT' (the broker holds 'AAPL')" in entry.message
    assert "qty 50.0 (the broker holds 1.0)" in entry.message
    assert entry.context["details"]["differing_fields"] == ["symbol", "qty"]

    outcomes = deployment.runtime.resilience.outcomes
    deployment.submit(dict(first))
    wait_for(lambda: outcomes.totals().get("duplicate_avoided") == 1, 30, "the resend resolved")
    assert [e["client_order_id"] for e in deployment.log_events("order_already_placed")] == [key]
    assert deployment.accepted_counts() == {key: 1}
    (booked,) = deployment.paper.list_orders()
    assert (booked.symbol, booked.qty) == ("AAPL", 1.0)
    assert outcomes.totals()["dead_lettered"] == 1
    assert set(deployment.dead_by_order()) == {key}


def _wait_for_total(deployment: Deployment, outcome: str, count: int) -> None:
    outcomes = deployment.runtime.resilience.outcomes
    wait_for(lambda: outcomes.totals().get(outcome) == count, 60, f"{count} {outcome}")


def _booked_and_dead(deployment: Deployment) -> set[str]:
    return deployment.booked() & set(deployment.dead_by_order())


def test_lost_reply_then_attempts_exhausted_settles_as_placed(
    deployment_factory: Callable[..., Deployment],
) -> None:
    """Each submit is booked but its reply lost, and every lookup of attempts 1 to 5 fails (the
    recovery's after each failure, the body's before attempts 2 to 5): before the dead letter
    the order is found at the broker, so it ends a success (recovered, duplicate avoided),
    booked once, and no order is both booked and dead-lettered."""
    deployment = deployment_factory(**FAST_RETRIES)
    chaos = deployment.runtime.chaos
    chaos.inject(ChaosRule("broker.submit_order", "TimeoutError", phase="after"))
    deployment.start_workers(concurrency=1)
    outcomes = deployment.runtime.resilience.outcomes
    orders = [order_kwargs("AAPL", 1), order_kwargs("MSFT", 2)]
    for done, order in enumerate(orders, start=1):
        # Nine failed lookups per order (5 recoveries, 4 retries' own), none for the last look.
        chaos.inject(ChaosRule("broker.get_order", "http:503", count=9))
        deployment.submit(order)
        _wait_for_total(deployment, "duplicate_avoided", done)
    ids = [o["client_order_id"] for o in orders]
    assert chaos.fired() == {"broker.submit_order": 2, "broker.get_order": 18}
    assert deployment.accepted_counts() == dict.fromkeys(ids, 1)
    assert deployment.dead_by_order() == {}
    totals = outcomes.totals()
    assert (totals["recovered"], totals["duplicate_avoided"]) == (2, 2)
    assert "dead_lettered" not in totals
    settled = deployment.log_events("task_settled_elsewhere")
    assert [e["error_type"] for e in settled] == ["TradingClientError"] * 2


def test_lost_reply_then_retry_budget_refused_settles_as_placed(
    deployment_factory: Callable[..., Deployment],
) -> None:
    """Six orders booked with their replies lost; the retry budget pays one recovery (its lookup
    finds the order) and refuses the other five, whose look before the dead letter finds theirs:
    every order ends booked once and none is dead-lettered."""
    deployment = deployment_factory(**FAST_RETRIES, ALCHEMISER_RESOURCES=ONE_RETRY_BUDGET)
    deployment.runtime.chaos.inject(ChaosRule("broker.submit_order", "TimeoutError", phase="after"))
    deployment.start_workers(concurrency=2)
    orders = [order_kwargs("AAPL", 1) for _ in range(6)]
    for order in orders:
        deployment.submit(order)
    outcomes = deployment.runtime.resilience.outcomes
    wait_for(lambda: outcomes.totals().get("recovered") == 6, 60, "six orders recovered")
    ids = [o["client_order_id"] for o in orders]
    assert deployment.accepted_counts() == dict.fromkeys(ids, 1)
    assert deployment.dead_by_order() == {}
    assert _booked_and_dead(deployment) == set()
    totals = outcomes.totals()
    assert (totals["duplicate_avoided"], totals.get("retried", 0)) == (6, 0)
    assert "dead_lettered" not in totals
    assert len(deployment.log_events("task_settled_elsewhere")) == 5
    tried = Counter((t["strategy"], t["outcome"]) for t in deployment.log_events("recovery_tried"))
    assert tried == {("order_lookup", "recovered"): 1, ("retry_budget", "gave_up"): 5}


def test_a_failing_lookup_before_the_dead_letter_dead_letters_as_before(
    deployment_factory: Callable[..., Deployment],
) -> None:
    """If the broker cannot be asked before the dead letter, the order is dead-lettered as
    before (the safe answer, it may be replayed) and the failed lookup is logged."""
    deployment = deployment_factory(**FAST_RETRIES)
    chaos = deployment.runtime.chaos
    chaos.inject(ChaosRule("broker.submit_order", "TimeoutError", phase="after"))
    chaos.inject(ChaosRule("broker.get_order", "http:503"))
    deployment.start_workers(concurrency=1)
    order = order_kwargs()
    entry = deployment.dead_letter(deployment.submit(order), 60)
    assert entry.error_type == "TradingClientError"
    assert entry.reason == "attempts exhausted (5 of 5)"
    # Each attempt's recovery lookup, the lookups of attempts 2 to 5, and the last look.
    assert chaos.fired() == {"broker.submit_order": 1, "broker.get_order": 10}
    failed = deployment.log_events("settlement_lookup_failed")
    assert [e["task_id"] for e in failed] == [entry.id]
    assert "503" in failed[0]["error"]
    assert "recovered" not in deployment.runtime.resilience.outcomes.totals()
