"""The same guarantees with RabbitMQ as the Celery broker (state stays in Redis).

Each test gets its own RabbitMQ virtual host, the namespacing CONTRACT asks for with RabbitMQ
(queue names are fixed). Skipped where no RabbitMQ runs: it is the optional broker.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from resilience.chaos import ChaosRule
from tests.integration.harness import Deployment, order_kwargs, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def rabbit_deployment(
    deployment_factory: Callable[..., Deployment], rabbitmq_vhost: str
) -> Deployment:
    broker_url = f"amqp://guest:guest@127.0.0.1:5672/{rabbitmq_vhost}"
    return deployment_factory(ALCHEMISER_BROKER_URL=broker_url, ALCHEMISER_MAX_REDELIVERIES="1")


def test_retry_then_success_over_rabbitmq(rabbit_deployment: Deployment) -> None:
    """Two 503s, two retries with the policy's countdowns, one booked order."""
    deployment = rabbit_deployment
    deployment.runtime.chaos.inject(ChaosRule("broker.submit_order", "http:503", count=2))
    deployment.start_workers()
    order = order_kwargs()
    deployment.submit(order)
    wait_for(lambda: order["client_order_id"] in deployment.booked(), 30, "the order")
    actions = [f["action"] for f in deployment.log_events("task_failed")]
    assert actions == ["retry", "retry"]
    assert deployment.accepted_counts()[order["client_order_id"]] == 1


def test_poison_message_over_rabbitmq(rabbit_deployment: Deployment) -> None:
    """RabbitMQ's own redelivered flag feeds the poison counter: dead-lettered after one
    redelivery (two runs)."""
    deployment = rabbit_deployment
    deployment.runtime.chaos.inject(ChaosRule("broker.submit_order", "crash"))
    deployment.start_workers(concurrency=1)
    task_id = deployment.submit(order_kwargs())
    entry = deployment.dead_letter(task_id, 60)
    assert entry.error_type == "PoisonMessageError"
    assert deployment.runtime.chaos.fired() == {"broker.submit_order": 2}
