"""A secret planted in kwargs, exception messages and context leaks nowhere: not the worker's
logs (structlog and Celery's own), not the dead letter, not the escalation."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from resilience.chaos import ChaosRule
from tests.integration.harness import Deployment, order_kwargs, wait_for

pytestmark = pytest.mark.integration

SECRET = "Zr7QpL2xVn9TkB4mWc8HsD3y"  # the deployment's Alpaca secret key


def test_a_planted_secret_appears_in_no_log_dead_letter_or_escalation(
    deployment_factory: Callable[..., Deployment],
) -> None:
    """The secret is in the exception message (every attempt), in an extra kwarg and in a
    redis URL of the message; none of the places a person reads ever shows it."""
    deployment: Deployment = deployment_factory(ALPACA_SECRET_KEY=SECRET)
    deployment.runtime.chaos.inject(
        ChaosRule(
            "broker.submit_order",
            "http:401",
            message=f"bad credentials secret={SECRET} via redis://ops:{SECRET}@10.0.0.1:6379",
        )
    )
    deployment.start_workers(concurrency=1)
    task_id = deployment.submit(order_kwargs(api_key=SECRET, note=f"key {SECRET}"))
    entry = deployment.dead_letter(task_id)
    wait_for(lambda: len(deployment.log_events("escalation")) == 1, 30, "the escalation")

    assert entry.error_type == "ValidationError"  # the extra kwargs fail validation first
    assert SECRET not in entry.to_json()
    logs = "".join(w.log() for w in deployment.workers)
    assert "task_dead_lettered" in logs
    assert SECRET not in logs


def test_a_secret_in_a_broker_error_is_scrubbed_everywhere(
    deployment_factory: Callable[..., Deployment],
) -> None:
    """A broker error whose message carries the secret: retried, dead-lettered, escalated and
    logged by Celery with its traceback, and the secret is in none of it."""
    deployment: Deployment = deployment_factory(ALPACA_SECRET_KEY=SECRET)
    deployment.runtime.chaos.inject(
        ChaosRule("broker.submit_order", "http:503", message=f"upstream said token {SECRET}")
    )
    deployment.start_workers(concurrency=1)
    task_id = deployment.submit(order_kwargs())
    entry = deployment.dead_letter(task_id, 60)
    wait_for(lambda: len(deployment.log_events("escalation")) == 1, 30, "the escalation")

    assert entry.error_type == "TradingClientError"
    assert len(entry.attempts) == 5
    assert "[Filtered]" in entry.message
    assert SECRET not in entry.to_json()
    logs = "".join(w.log() for w in deployment.workers)
    assert "raised unexpected" in logs  # Celery's own error line with its traceback
    assert "Retry in" in logs or "retry" in logs.lower()
    assert SECRET not in logs
