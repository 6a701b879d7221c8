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
