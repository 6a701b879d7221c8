"""``WorkerProcess.stop`` is a warm shutdown: the task running finishes and is acknowledged,
nothing is handed back to the queue (the demo, the benchmarks and the tests stop workers so)."""

from __future__ import annotations

from collections.abc import Callable

from resilience.chaos import ChaosRule
from tests.integration.harness import Deployment, order_kwargs, wait_for


def test_a_warm_stop_lets_the_running_task_finish(
    deployment_factory: Callable[..., Deployment],
) -> None:
    """An order is booked, then its task waits 3 s (injected) before it returns; the worker is
    stopped meanwhile. It exits 0 after the task returned: no message is left queued or
    unacknowledged, so no other worker runs the order again.

    Before the fix ``stop`` sent SIGTERM to the whole process group: the pool child died
    mid-task and the message was handed back (1 left in the queue or ``unacked``)."""
    deployment = deployment_factory()
    deployment.runtime.chaos.inject(
        ChaosRule("broker.submit_order", "none", latency_ms=3000, phase="after")
    )
    (worker,) = deployment.start_workers(concurrency=1)
    order = order_kwargs()
    deployment.submit(order)
    wait_for(lambda: order["client_order_id"] in deployment.booked(), 30, "the order booked")
    worker.stop(timeout_s=20)
    assert worker.process.returncode == 0, worker.log()[-3000:]
    prefix = deployment.runtime.resilience.keys.broker_prefix
    redis = deployment.redis
    left = redis.llen(f"{prefix}trading") + redis.hlen(f"{prefix}unacked")
    assert left == 0, worker.log()[-3000:]
    assert deployment.accepted_counts()[order["client_order_id"]] == 1
