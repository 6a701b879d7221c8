"""Issue 12, items 7 and 8 on real workers: every dead letter is one error in ``/metrics``
(stale orders included), and a payload naming a secret field keeps pydantic's words."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import Deployment, order_kwargs, wait_for
from worker.exporter import render_metrics

pytestmark = pytest.mark.integration

SECRET = "Zr7QpL2xVn9TkB4mWc8HsD3y"  # the deployment's Alpaca secret key
STALE, UNFUNDED = 3, 2


def totals(deployment: Deployment) -> dict[str, dict[str, float]]:
    """``/metrics`` parsed: each counter's samples summed by one label (``error_type`` for
    ``alchemiser_errors_total``, ``name`` for the task counters)."""
    found: dict[str, dict[str, float]] = {}
    text = render_metrics(deployment.runtime).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = sample.labels.get("error_type", sample.labels.get("name", ""))
            per_label = found.setdefault(sample.name, {})
            per_label[label] = per_label.get(label, 0.0) + sample.value
    return found


def test_stale_orders_and_other_dead_letters_each_count_once(
    deployment_factory: Callable[..., Deployment],
) -> None:
    """Three orders past their deadline, two the account cannot fund and one with an extra
    ``api_key``: six dead letters written by a worker, six errors in ``alchemiser_errors_total``
    (three of them StaleOrderError); the invalid order's dead letter says "api_key: Extra
    inputs are not permitted" and holds no secret."""
    deployment = deployment_factory(ALPACA_SECRET_KEY=SECRET)
    deployment.start_workers(concurrency=1)
    stale = [deployment.submit(order_kwargs(ttl_s=-5)) for _ in range(STALE)]
    unfunded = [deployment.submit(order_kwargs("NVDA", 1_000_000)) for _ in range(UNFUNDED)]
    invalid = deployment.submit(order_kwargs(api_key=SECRET))
    for task_id in (*stale, *unfunded, invalid):
        deployment.dead_letter(task_id, 30)
    dead = STALE + UNFUNDED + 1

    def counted() -> bool:
        # A worker counts a dead letter just after it writes it.
        found = totals(deployment)
        return all(
            sum(found.get(name, {}).values()) >= dead
            for name in ("alchemiser_errors_total", "alchemiser_task_dead_lettered_total")
        )

    wait_for(counted, 15, f"{dead} dead letters and errors counted")

    found = totals(deployment)
    assert found["alchemiser_errors_total"] == {
        "StaleOrderError": STALE,
        "InsufficientFundsError": UNFUNDED,
        "ValidationError": 1,
    }
    assert found["alchemiser_task_dead_lettered_total"] == {"tasks.submit_order": dead}
    entry = deployment.dead_letter(invalid)
    assert entry.message == (
        "invalid OrderRequest payload: api_key: Extra inputs are not permitted"
    )
    assert SECRET not in entry.to_json()
