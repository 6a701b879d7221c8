"""``alchemiser health`` as a person reads it (the JSON form and the exit codes through an
incident are tested on real workers in tests/integration/test_health_on_workers.py)."""

from __future__ import annotations

import redis

from resilience.guard.status import GuardStatus
from resilience.storage.clock import SystemClock
from resilience.storage.epoch import EpochStore, ServerRun
from resilience.storage.keys import KeySpace
from tasks.resources import DEFAULT_RESOURCES
from tests.worker.test_cli import ns, run

__all__ = ["ns"]  # the fixture, shared with test_cli


def test_a_quiet_namespace_is_healthy_with_exit_code_0(ns: str) -> None:
    result = run("health")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("HEALTHY at ")
    assert "critical_errors" in result.stdout


def test_a_forced_open_breaker_is_critical_with_exit_code_2_and_advice(
    client: redis.Redis, ns: str
) -> None:
    GuardStatus(client, KeySpace(ns), DEFAULT_RESOURCES).force_open("broker.orders")
    result = run("health")
    assert result.exit_code == 2, result.output
    assert result.stdout.startswith("CRITICAL at ")
    assert "  - breaker broker.orders forced open by an operator" in result.stdout
    assert "* A breaker refuses every call to its resource" in result.stdout


class _Runs:
    """A server run a test can change: the restart of a Redis without persistence."""

    def __init__(self) -> None:
        self.run = ServerRun("run-a", 50.0)

    def current(self) -> ServerRun:
        return self.run


def test_a_redis_that_lost_its_data_is_critical_with_what_to_do(
    client: redis.Redis, ns: str
) -> None:
    """A worker saw the epoch; the epoch went with a restart: the loss leads the reasons."""
    runs = _Runs()
    store = EpochStore(client, KeySpace(ns), SystemClock(), runs=runs)
    seen = store.look(None).sighting
    client.delete(KeySpace(ns).epoch)
    runs.run = ServerRun("run-b", 1.0)
    assert store.look(seen).recorded
    result = run("health")
    assert result.exit_code == 2, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("CRITICAL at ")
    assert lines[1].startswith("  - Redis lost its data at ")
    assert f"(epoch {seen.epoch.epoch_id} gone; Redis restarted: run_id changed)" in lines[1]
    assert "* Redis came back without its data" in result.stdout
