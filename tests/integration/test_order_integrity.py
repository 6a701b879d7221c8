"""Order integrity on real workers: deadlines cannot be bypassed, an idempotency key names one
order, and no order is both booked and dead-lettered."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.harness import Deployment, order_kwargs, wait_for

pytestmark = pytest.mark.integration


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
