"""Bad input gets a clear error, is never retried, and never takes a worker down."""

from __future__ import annotations

import time
from typing import Any

import pytest

from resilience.deadletter.replay import Replayer
from resilience.deadletter.store import DeadLetter
from tasks.replay import prepare_replay
from tests.builders import dead_order
from tests.integration.harness import Deployment, order_kwargs, wait_for

pytestmark = pytest.mark.integration

TEN_MB = 10 * 1024 * 1024


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"qty": -5}, "qty: Input should be greater than 0"),
        (
            {"type": "limit", "limit_price": float("nan")},
            "limit_price: Input should be a finite number",
        ),
        ({"side": "hold"}, "side: Input should be 'buy' or 'sell'"),
        ({"symbol": "A" * TEN_MB}, "symbol: String should have at most 12 characters"),
        ({"note": "x" * TEN_MB}, "note: Extra inputs are not permitted"),
    ],
    ids=["negative-qty", "nan-price", "unknown-side", "10mb-symbol", "10mb-extra-field"],
)
def test_invalid_order_is_dead_lettered_once_with_a_clear_error(
    deployment: Deployment, change: dict[str, Any], problem: str
) -> None:
    """Each invalid payload: one attempt, ValidationError naming the field, a small dead
    letter, no order, and the worker goes on to accept a valid order."""
    (worker,) = deployment.start_workers(concurrency=1)
    bad = order_kwargs(**change)
    task_id = deployment.submit(bad)
    entry = deployment.dead_letter(task_id, 60)
    assert entry.error_type == "ValidationError"
    assert problem in entry.message
    assert len(entry.attempts) == 1
    assert len(entry.to_json()) < 64 * 1024
    assert "retried" not in deployment.runtime.resilience.outcomes.totals()
    assert deployment.booked() == set()

    good = order_kwargs()
    deployment.submit(good)
    wait_for(lambda: good["client_order_id"] in deployment.booked(), 30, "a valid order")
    assert worker.process.poll() is None


def test_positional_arguments_are_refused_without_retry(deployment: Deployment) -> None:
    """A message with positional arguments fails once with a message saying so."""
    deployment.start_workers(concurrency=1)
    task_id = str(deployment.app.send_task("tasks.submit_order", args=["AAPL", "buy", 1]).id)
    entry = deployment.dead_letter(task_id, 30)
    assert entry.error_type == "AlchemiserError"
    assert "positional argument" in entry.message
    assert len(entry.attempts) == 1


def test_unregistered_task_name_does_not_crash_the_worker(deployment: Deployment) -> None:
    """A message naming a task nobody registered is dropped with an error; the worker lives."""
    (worker,) = deployment.start_workers(concurrency=1)
    deployment.app.send_task("tasks.rm_rf", kwargs={}, queue="trading")
    good = order_kwargs()
    deployment.submit(good)
    wait_for(lambda: good["client_order_id"] in deployment.booked(), 30, "a valid order")
    assert worker.process.poll() is None
    assert "Received unregistered task of type 'tasks.rm_rf'" in worker.log()


def test_replay_refuses_unregistered_task_names(deployment: Deployment) -> None:
    """Replay never publishes a dead letter whose task is not a registered trading task."""
    store = deployment.runtime.resilience.dead_letters
    entry = dead_order("forged-1", task="celery.backend_cleanup", kwargs={}, idempotency_key=None)
    store.add(entry)
    published: list[str] = []

    def publish(dead: DeadLetter, kwargs: dict[str, Any]) -> str:
        published.append(dead.id)
        return "never"

    replayer = Replayer(store, prepare=prepare_replay(now_s=time.time), publish=publish)
    result = replayer.replay("forged-1", actor="test")
    assert result.outcome == "skipped"
    assert result.reason == "'celery.backend_cleanup' is not a registered trading task"
    assert published == []
    refreshed = store.get("forged-1")
    assert refreshed is not None and refreshed.status == "dead"
