"""Issue 5's acceptance: metrics are the fleet's, identical whichever process serves them.

Two workers, each a prefork pool of two, run orders that succeed, that are retried and then
recover, and that are dead-lettered (one of them replayed); then two fresh processes, built
like any worker's runtime from the deployment's environment, render ``/metrics``: both renders
are byte-identical (and equal the test process's own) and hold the exact counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from resilience.chaos import ChaosRule
from resilience.deadletter.replay import Replayer
from resilience.guard.status import GuardStatus
from resilience.notify.escalator import DeliveryStats
from tasks.replay import prepare_replay, replay_publisher
from tests.integration.harness import Deployment, order_kwargs, wait_for
from worker.exporter import render_metrics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# Breakers on (their default thresholds are far above these few failures), retry budgets off so
# the two retries are paid whatever the budget holds.
RESOURCES = json.dumps(
    {"broker.orders": {"retry_budget": False}, "broker.data": {"retry_budget": False}}
)
RENDER = (
    "import sys\n"
    "from worker.exporter import render_metrics\n"
    "from worker.runtime import build_runtime\n"
    "from worker.settings import load_settings\n"
    "with open(sys.argv[1], 'wb') as out:\n"
    "    out.write(render_metrics(build_runtime(load_settings())))\n"
)
SUBMIT = "tasks.submit_order"


def render_in_new_process(deployment: Deployment, out: Path) -> bytes:
    """``/metrics`` as a separate process of the deployment would serve it."""
    env = {**os.environ, **deployment.env}
    subprocess.run(
        [sys.executable, "-c", RENDER, str(out)], env=env, cwd=REPO, check=True, timeout=60
    )
    return out.read_bytes()


def samples(text: bytes) -> dict[str, float]:
    """Every sample as ``name{label="value",...}`` -> value."""
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


def settled(deployment: Deployment, calls: int) -> Callable[[], bool]:
    """Whether the broker.orders breaker has every call recorded (successes are recorded late,
    by each worker's settler)."""
    runtime = deployment.runtime.resilience
    assert runtime.guard is not None
    status = GuardStatus(runtime.redis, runtime.keys, runtime.guard.resources)
    return lambda: status.breaker("broker.orders").calls == calls


def test_metrics_are_identical_whichever_process_serves_them(
    deployment_factory: Callable[..., Deployment], tmp_path: Path
) -> None:
    """Two prefork workers of two; two other processes render the same, exact metrics."""
    deployment = deployment_factory(ALCHEMISER_RESOURCES=RESOURCES)
    chaos = deployment.runtime.chaos
    deployment.start_workers(2, concurrency=2)

    # Retried twice (two 503s), then booked.
    chaos.inject(ChaosRule("broker.submit_order", "http:503", count=2))
    recovering = order_kwargs("MSFT")
    deployment.submit(recovering)
    wait_for(lambda: recovering["client_order_id"] in deployment.booked(), 15, "the recovery")
    # A critical error: dead-lettered at once, escalated at once; then replayed, and booked.
    chaos.inject(ChaosRule("broker.submit_order", "SecurityError", count=1))
    critical = order_kwargs("TSLA")
    dead_id = deployment.submit(critical)
    deployment.dead_letter(dead_id, 15)
    replayer = Replayer(
        deployment.runtime.resilience.dead_letters,
        prepare=prepare_replay(now_s=time.time),
        publish=replay_publisher(deployment.app),
    )
    assert replayer.replay(dead_id, actor="test").outcome == "replayed"
    wait_for(lambda: critical["client_order_id"] in deployment.booked(), 15, "the replay")
    # Four that succeed first time and two the account cannot fund, all at once.
    good = [order_kwargs("AAPL") for _ in range(4)]
    unfunded = [deployment.submit(order_kwargs("NVDA", 1_000_000)) for _ in range(2)]
    for order in good:
        deployment.submit(order)
    for task_id in unfunded:
        deployment.dead_letter(task_id, 15)
    wait_for(
        lambda: {o["client_order_id"] for o in good} <= deployment.booked(), 15, "the bookings"
    )
    stats = DeliveryStats(deployment.redis, deployment.runtime.resilience.keys)
    wait_for(
        lambda: stats.snapshot().get("notifications_total|console") == 1.0,
        15,
        "the critical alert's notification",
    )
    # Calls: the recovered order's three runs, the replay and the four good orders (a
    # SecurityError or an unfunded order is not the broker's fault, so not counted against it).
    wait_for(settled(deployment, 3 + 1 + 4), 15, "every call recorded on the breaker")

    first = render_in_new_process(deployment, tmp_path / "first.txt")
    second = render_in_new_process(deployment, tmp_path / "second.txt")
    assert first == second
    assert render_metrics(deployment.runtime) == first

    found = samples(first)
    expected = {
        f'alchemiser_task_retried_total{{name="{SUBMIT}"}}': 2,
        f'alchemiser_task_recovered_total{{name="{SUBMIT}"}}': 1,
        f'alchemiser_task_dead_lettered_total{{name="{SUBMIT}"}}': 3,
        'alchemiser_task_recovered_after_retries_total{retries="2"}': 1,
        "alchemiser_task_replayed_total{}": 1,
        'alchemiser_errors_total{component="trading",error_type="TradingClientError",'
        'severity="high"}': 2,
        'alchemiser_errors_total{component="trading",error_type="SecurityError",'
        'severity="critical"}': 1,
        'alchemiser_errors_total{component="trading",error_type="InsufficientFundsError",'
        'severity="high"}': 2,
        # The replayed entry is no longer waiting.
        "alchemiser_dlq_depth{}": 2,
        'alchemiser_breaker_state{resource="broker.orders",state="closed"}': 1,
        'alchemiser_breaker_state{resource="broker.orders",state="open"}': 0,
        'alchemiser_breaker_calls{resource="broker.orders"}': 8,
        'alchemiser_breaker_failure_ratio{resource="broker.orders"}': pytest.approx(2 / 8),
        # Every run asked broker.orders first: 3 + 2 + 4 + 2.
        'alchemiser_limiter_admitted_total{resource="broker.orders"}': 11,
        # The critical alert: email, slack and sms are not configured; console took it.
        'alertmanager_notifications_total{integration="console"}': 1,
        'alertmanager_notifications_failed_total{integration="email",reason="not_configured"}': 1,
        'alertmanager_notifications_failed_total{integration="sms",reason="not_configured"}': 1,
        'alertmanager_notification_latency_seconds_count{integration="console"}': 1,
    }
    assert {name: found.get(name) for name in expected} == expected
    assert not any(name.startswith("alchemiser_task_deferred_total") for name in found)
