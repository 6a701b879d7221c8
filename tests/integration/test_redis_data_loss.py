"""A Redis that lost its data is visible: on a private ``redis-server`` killed with -9 and
restarted, ``alchemiser health --json`` (a separate process) is CRITICAL with the loss when the
server had no persistence, and not when it had AOF; the worker says so in its log, once.

The bound. The worker looks at the fleet epoch whenever its consumer (re)connects, which on the
Redis broker is as soon as Celery's reconnection loop (retries 2 s apart at first) reaches the
restarted server, and every ``redis_epoch_check_s`` after; ``health`` reads the loss the look
records. Measured here: the loss in the log about 1 s after the server answers again, health
CRITICAL at its first call after that (each call is a fresh Python process, about 1 s).
``DETECTION_BOUND_S`` leaves room for a loaded machine: a reconnection retry or two more and a
slow health process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from resilience.storage.epoch import DATA_LOST_ERROR_TYPE
from tests.integration.harness import Deployment, wait_for
from tests.redis_process import RedisProcess, redis_process
from tests.worker.cli_process import cli_environment, run_cli
from worker.http import ObservabilityServer
from worker.observability import build_sources

pytestmark = pytest.mark.integration

DETECTION_BOUND_S = 20.0
DOWN_S = 1.0
# Short, so that "logged once" is tested against several looks after the first.
EPOCH_CHECK_S = "0.5"


@pytest.fixture
def memory_redis() -> Iterator[RedisProcess]:
    with redis_process(appendonly=False) as server:
        yield server


@pytest.fixture
def aof_redis() -> Iterator[RedisProcess]:
    with redis_process(appendonly=True) as server:
        yield server


def health(deployment: Deployment) -> tuple[int, dict[str, Any]]:
    """``python -m worker.cli.main health --json`` for the deployment: exit code, document."""
    result = run_cli("health", "--json", env=cli_environment(**deployment.env))
    return result.returncode, json.loads(result.stdout)


def data_check(document: dict[str, Any]) -> dict[str, Any]:
    (check,) = (c for c in document["checks"] if c["name"] == "redis_data")
    return check


def working_fleet(
    deployment_factory: Callable[..., Deployment], server: RedisProcess
) -> Deployment:
    """One worker on ``server`` with an order booked, and health saying the epoch is kept."""
    deployment = deployment_factory(
        on_redis=server.url, ALCHEMISER_REDIS_EPOCH_CHECK_S=EPOCH_CHECK_S
    )
    deployment.start_workers(concurrency=1)
    deployment.book(1)
    code, before = health(deployment)
    assert (code, before["status"], data_check(before)["status"]) == (0, "healthy", "healthy")
    assert data_check(before)["message"].startswith("epoch ")
    return deployment


def test_a_redis_restart_without_persistence_is_critical_in_health_and_logged_once(
    deployment_factory: Callable[..., Deployment], memory_redis: RedisProcess
) -> None:
    """kill -9 and restart of a Redis without persistence: the booked order is gone, and within
    DETECTION_BOUND_S ``health --json`` exits 2 with the redis_data check CRITICAL, its message
    and advice, and the loss escalated as an alert; ``/health`` answers 503 with the same check.
    The worker logged ``redis_data_lost`` once, and still books orders."""
    deployment = working_fleet(deployment_factory, memory_redis)

    memory_redis.restart_after(DOWN_S)
    assert deployment.booked() == set()
    wait_for(
        lambda: health(deployment)[0] == 2, DETECTION_BOUND_S, "health to report the data loss"
    )
    code, during = health(deployment)
    check = data_check(during)
    assert (code, during["status"], check["status"]) == (2, "critical", "critical")
    assert check["message"].startswith("Redis lost its data at ")
    assert "gone; Redis restarted: run_id changed)" in check["message"]
    assert "check Redis persistence (AOF)" in check["message"]
    assert during["reasons"][0] == check["message"]
    assert during["recommendations"][0].startswith("Redis came back without its data")

    server = ObservabilityServer(build_sources(deployment.settings)).start()
    try:
        answer = requests.get(f"{server.url}/health", timeout=10)
    finally:
        server.stop()
    assert answer.status_code == 503
    assert data_check(answer.json())["message"] == check["message"]

    wait_for(
        lambda: any(
            a["group"] == f"{DATA_LOST_ERROR_TYPE}:redis"
            for a in health(deployment)[1]["active_alerts"]
        ),
        DETECTION_BOUND_S,
        "the data loss escalated as an alert",
    )
    deployment.book(1)  # the worker goes on, and more looks pass
    (lost,) = deployment.log_events("redis_data_lost")
    assert lost["level"] == "critical"
    assert lost["message"] == check["message"]


def test_a_redis_restart_with_aof_is_not_a_data_loss(
    deployment_factory: Callable[..., Deployment], aof_redis: RedisProcess
) -> None:
    """The same kill -9 and restart with AOF on: the worker sees the restart and the epoch kept
    (``redis_restarted``), the booked order is still there, health stays healthy."""
    deployment = working_fleet(deployment_factory, aof_redis)
    booked = deployment.booked()

    aof_redis.restart_after(DOWN_S)
    wait_for(
        lambda: deployment.log_events("redis_restarted"),
        DETECTION_BOUND_S,
        "the worker to look at the epoch after the restart",
    )
    code, after = health(deployment)
    assert (code, after["status"], data_check(after)["status"]) == (0, "healthy", "healthy")
    assert deployment.booked() == booked
    assert deployment.log_events("redis_data_lost") == []


def test_an_epoch_deleted_without_a_restart_is_seen_by_the_periodic_look(
    deployment_factory: Callable[..., Deployment], memory_redis: RedisProcess
) -> None:
    """No restart, so no reconnection: the epoch record deleted (as a flush or an eviction
    would) is noticed by the look every redis_epoch_check_s, dated between two looks."""
    deployment = working_fleet(deployment_factory, memory_redis)

    deployment.redis.delete(deployment.runtime.resilience.keys.epoch)
    wait_for(
        lambda: deployment.log_events("redis_data_lost"),
        DETECTION_BOUND_S,
        "the periodic look to notice the deleted epoch",
    )
    code, during = health(deployment)
    assert (code, data_check(during)["status"]) == (2, "critical")
    assert (
        "gone; Redis did not restart: flushed, evicted or deleted)"
        in (data_check(during)["message"])
    )
