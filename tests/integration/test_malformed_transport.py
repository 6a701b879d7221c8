"""One malformed message never stops a queue: it is quarantined, acknowledged, and the same
worker process goes on booking orders."""

from __future__ import annotations

import pytest

from tests.integration.harness import EMBED, Deployment, order_kwargs, publish_raw, wait_for

pytestmark = pytest.mark.integration


def _publish(deployment: Deployment, body: object, **headers: object) -> str:
    return publish_raw(deployment.app, body, task="tasks.submit_order", **headers)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("dict-body", "cannot be read as a task"), ("timelimit", "timelimit header"),
     ("retries", "retries header")],
)  # fmt: skip
def test_a_malformed_message_is_quarantined_and_the_worker_lives(
    deployment: Deployment, kind: str, reason: str
) -> None:
    """A body that is not [args, kwargs, embed], a timelimit of strings, a non-numeric retries
    header: each is a MalformedMessageError dead letter, never booked; then 20 valid orders
    are all booked by the same worker process, still running."""
    (worker,) = deployment.start_workers(concurrency=1)
    order = order_kwargs()
    if kind == "dict-body":
        task_id = _publish(deployment, {"a": 1})
    elif kind == "timelimit":
        task_id = _publish(deployment, [[], order, EMBED], timelimit=["a", "b"])
    else:
        task_id = _publish(deployment, [[], order, EMBED], retries="many")
    entry = deployment.dead_letter(task_id, 30)
    assert entry.error_type == "MalformedMessageError"
    assert reason in entry.message
    deployment.book(20)
    assert order["client_order_id"] not in deployment.booked()
    assert worker.process.poll() is None
    assert "Unrecoverable error" not in worker.log()


@pytest.mark.parametrize("item", ["not json", '{"a": 1}', "[1, 2]"])
def test_an_item_that_is_no_message_is_quarantined_and_the_worker_lives(
    deployment: Deployment, item: str
) -> None:
    """A raw LPUSH of text that is not a kombu envelope: quarantined with its text, the same
    worker process then books 20 orders."""
    (worker,) = deployment.start_workers(concurrency=1)
    deployment.redis.lpush(f"{deployment.settings.namespace}:trading", item)
    store = deployment.runtime.resilience.dead_letters
    wait_for(lambda: len(store.entries()) == 1, 30, "the quarantined item")
    (entry,) = store.entries()
    assert entry.error_type == "MalformedMessageError"
    assert entry.queue == "trading"
    assert entry.extra["raw_body"] == item
    deployment.book(20)
    assert worker.process.poll() is None
