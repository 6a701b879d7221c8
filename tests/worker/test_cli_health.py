"""``alchemiser health`` as a person reads it (the JSON form and the exit codes through an
incident are tested on real workers in tests/integration/test_health_on_workers.py)."""

from __future__ import annotations

import redis

from resilience.guard_status import GuardStatus
from resilience.keys import KeySpace
from resilience.resources import DEFAULT_RESOURCES
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
