"""The other trading tasks on real workers: rebalance fan-out, cancel, quotes, positions."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.harness import Deployment, order_kwargs, wait_for

pytestmark = pytest.mark.integration


def test_rebalance_fans_out_orders_and_a_rerun_adds_none(deployment: Deployment) -> None:
    """A rebalance fans out one order per leg with ids derived from its task id; the same
    rebalance delivered again recomputes from the broker's positions and books nothing new."""
    deployment.paper.set_quote("AAPL", 100.0)
    deployment.paper.set_quote("MSFT", 200.0)
    deployment.start_workers()
    task_id = f"rebalance-{uuid.uuid4().hex[:8]}"
    targets = {"targets": {"AAPL": 0.5, "MSFT": 0.25}}
    deployment.app.send_task("tasks.rebalance", kwargs=targets, task_id=task_id)
    wait_for(lambda: len(deployment.booked()) == 2, 30, "both legs booked")
    deployment.app.send_task("tasks.rebalance", kwargs=targets, task_id=task_id)
    wait_for(lambda: len(deployment.log_events("rebalance_fanned_out")) == 2, 30, "the second run")

    first, second = deployment.log_events("rebalance_fanned_out")
    assert (first["legs"], second["legs"]) == (2, 0)
    orders = {o.symbol: o for o in deployment.paper.list_orders()}
    assert set(orders) == {"AAPL", "MSFT"}
    # 1,000,000 of equity at mid prices: half in AAPL (100), a quarter in MSFT (200).
    assert orders["AAPL"].qty == 5000
    assert orders["MSFT"].qty == 1250
    assert all(o.client_order_id.startswith(f"rb-{task_id}-") for o in orders.values())
    assert all(n == 1 for n in deployment.accepted_counts().values())


def test_cancel_order_cancels_a_resting_limit_order(deployment: Deployment) -> None:
    """A limit below the market rests; tasks.cancel_order cancels it at the broker."""
    deployment.paper.set_quote("AAPL", 100.0)
    deployment.start_workers()
    order = order_kwargs("AAPL", 3, type="limit", limit_price=50.0)
    deployment.submit(order)
    wait_for(lambda: order["client_order_id"] in deployment.booked(), 30, "the resting order")
    resting = deployment.paper.get_order_by_client_id(order["client_order_id"])
    assert resting is not None and resting.status == "accepted"

    deployment.app.send_task("tasks.cancel_order", kwargs={"order_id": resting.id})

    def canceled() -> bool:
        current = deployment.paper.get_order(resting.id)
        return current is not None and current.status == "canceled"

    wait_for(canceled, 30, "the cancel")


def test_fetch_quote_and_sync_positions_run_on_their_queues(deployment: Deployment) -> None:
    """fetch_quote is routed to market_data and sync_positions to trading; both run."""
    deployment.start_workers()
    deployment.app.send_task("tasks.fetch_quote", kwargs={"symbol": "AAPL"})
    deployment.app.send_task("tasks.sync_positions", kwargs={})
    deployment.submit(order_kwargs("AAPL", 2))
    wait_for(lambda: len(deployment.booked()) == 1, 30, "the order")
    assert deployment.app.amqp.router.route({}, "tasks.fetch_quote")["queue"].name == "market_data"
    assert deployment.app.amqp.router.route({}, "tasks.sync_positions")["queue"].name == "trading"
    assert [p.qty for p in deployment.paper.list_positions()] == [2.0]
