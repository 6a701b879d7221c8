"""Nothing a worker refuses is dropped silently: valid orders with a garbled header of ours are
run, and messages that cannot run as tasks are quarantined as dead letters with their raw body.
"""

from __future__ import annotations

import time

import pytest

from resilience.deadletter.replay import Replayer
from tasks.replay import prepare_replay
from tests.integration.harness import EMBED, Deployment, order_kwargs, publish_raw, wait_for

pytestmark = pytest.mark.integration

MALFORMED_HEADERS = ({"failures": "abc"}, "oops", {"history": 5}, {"failures": -1})


def _publish(
    deployment: Deployment, task: str, kwargs: dict[str, object], **headers: object
) -> str:
    """Publish a task message to ``trading`` with extra protocol headers (e.g. a bad ``eta``)."""
    return publish_raw(deployment.app, [[], kwargs, EMBED], task=task, **headers)


def test_a_valid_order_with_a_malformed_header_of_ours_is_booked(deployment: Deployment) -> None:
    """Each garbled ``alchemiser`` header is read as absent and said once in the log; the
    orders are booked, none dropped and none dead-lettered."""
    deployment.start_workers(concurrency=1)
    orders = [order_kwargs() for _ in MALFORMED_HEADERS]
    for order, header in zip(orders, MALFORMED_HEADERS, strict=True):
        deployment.app.send_task("tasks.submit_order", kwargs=order, headers={"alchemiser": header})
    ids = {o["client_order_id"] for o in orders}
    wait_for(lambda: ids <= deployment.booked(), 30, "every order booked")
    assert deployment.runtime.resilience.dead_letters.entries() == []
    expected = sorted(repr(header) for header in MALFORMED_HEADERS)

    def logged() -> list[str]:
        return sorted(e["header"] for e in deployment.log_events("malformed_delivery_header"))

    wait_for(lambda: logged() == expected, 10, "each malformed header said once in the log")


@pytest.mark.parametrize(
    ("task", "headers", "reason"),
    [
        ("tasks.rm_rf", {}, "unregistered task name 'tasks.rm_rf'"),
        ("tasks.submit_order", {"eta": "not-a-date"}, "invalid task message"),
        ("tasks.submit_order", {"expires": "garbage"}, "invalid task message"),
    ],
    ids=["unregistered", "bad-eta", "bad-expires"],
)
def test_a_message_that_cannot_run_is_quarantined_and_the_worker_goes_on(
    deployment: Deployment, task: str, headers: dict[str, object], reason: str
) -> None:
    """The refused message becomes a MalformedMessageError dead letter holding its raw body
    (scrubbed), is counted, is refused by replay, and the same worker then books 5 orders."""
    (worker,) = deployment.start_workers(concurrency=1)
    kwargs = {**order_kwargs(), "api_key": "hunter2-in-a-refused-message"}
    task_id = _publish(deployment, task, kwargs, **headers)
    entry = deployment.dead_letter(task_id, 30)
    assert entry.error_type == "MalformedMessageError"
    assert entry.task == task
    assert entry.message.startswith(reason)
    assert kwargs["client_order_id"] in entry.extra["raw_body"]
    assert "hunter2-in-a-refused-message" not in entry.to_json()
    totals = deployment.runtime.resilience.outcomes.totals()
    assert totals.get("dead_lettered") == 1
    store = deployment.runtime.resilience.dead_letters
    result = Replayer(
        store, prepare=prepare_replay(now_s=time.time), publish=lambda *_: "never"
    ).replay(task_id, actor="test")
    assert result.outcome == "skipped"
    deployment.book(5, timeout_s=30)
    assert worker.process.poll() is None
