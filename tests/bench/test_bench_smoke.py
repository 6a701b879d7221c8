"""Smoke tests of the benchmarks in ``bench/``: they wire up and clean up (not their figures)."""

from __future__ import annotations

import re

import pytest
import redis

from bench import throughput
from bench.benchapp import (
    GUARDED_RESOURCE,
    GUARDED_RESOURCES,
    GUARDED_TASK,
    RESILIENT_TASK,
    ROUND_TRIP_TASK,
    build_app,
    done_key,
)
from bench.guard_latency import main as guard_latency_main
from resilience.guard.resource_tables import resources_from_mapping
from resilience.task import ResilientTask
from tests.namespaces import fresh_namespace
from worker.settings import load_settings


def test_guarded_task_declares_its_resource_and_the_resilient_task_none() -> None:
    """``bench.guarded_noop`` declares ``bench.noop``; ``bench.resilient_noop`` stays unguarded."""
    app = build_app(count=lambda: None)
    try:
        guarded, resilient = app.tasks[GUARDED_TASK], app.tasks[RESILIENT_TASK]
        assert isinstance(guarded, ResilientTask)
        assert isinstance(resilient, ResilientTask)
        assert guarded.resources == (GUARDED_RESOURCE,)
        assert resilient.resources == ()
    finally:
        app.close()


def test_guarded_resource_config_is_valid_and_never_refuses_at_bench_rates() -> None:
    """The worker's ALCHEMISER_RESOURCES merges cleanly and has every protection on."""
    config = resources_from_mapping(GUARDED_RESOURCES)[GUARDED_RESOURCE]
    assert config.breaker is not None
    assert config.rate_limit is not None
    assert config.concurrency is not None
    assert config.rate_limit.max_in(1.0) > 100_000
    assert config.concurrency.limit >= 2


@pytest.mark.parametrize(
    "flags", [["--aa", "--guarded"], ["--aa", "--round-trip"], ["--guarded", "--round-trip"]]
)
def test_throughput_refuses_two_runs_at_once(flags: list[str]) -> None:
    """``--aa``, ``--guarded`` and ``--round-trip`` are different runs: two are refused."""
    with pytest.raises(SystemExit):
        throughput._parse(flags)


@pytest.mark.parametrize("lease", [0, 4])
def test_guarded_run_settings_hold_the_guarded_resource(lease: int) -> None:
    """The bench process's own settings carry the workers' guarded resource, merged over the
    configured ones."""
    flags = ["--guarded"] + (["--lease", str(lease)] if lease else [])
    settings = throughput.run_settings(load_settings(), throughput._parse(flags))
    config = settings.resource_configs[GUARDED_RESOURCE]
    assert config.breaker is not None
    assert config.rate_limit is not None
    assert (config.permit_lease is not None) is bool(lease)
    assert "broker.api" in settings.resource_configs
    assert settings.namespace.startswith("bench-")


def test_round_trip_task_pings_once_then_counts(redis_url: str, client: redis.Redis) -> None:
    """``bench.round_trip_noop`` is a plain task that makes one PING and then the body's
    INCR per run."""
    settings = load_settings().model_copy(
        update={"redis_url": redis_url, "namespace": fresh_namespace("test-bench")}
    )
    app = build_app(settings)
    try:
        task = app.tasks[ROUND_TRIP_TASK]
        assert not isinstance(task, ResilientTask)
        before = _command_calls(client)
        task.run()
        task.run()
        after = _command_calls(client)
        assert client.get(done_key(settings.namespace)) == "2"
        assert after["ping"] - before["ping"] >= 2
        assert after["incrby"] - before["incrby"] >= 2  # redis-py sends INCR as INCRBY
    finally:
        client.delete(done_key(settings.namespace))
        app.close()


def _command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {
        name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("ping", "incrby")
    }


def test_guard_latency_runs_and_leaves_no_keys(
    redis_url: str,
    client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A tiny run prints both tables, exits 0 and deletes every key under its prefix."""
    monkeypatch.setenv("ALCHEMISER_REDIS_URL", redis_url)
    code = guard_latency_main(
        ["--rounds", "2", "--iterations", "20", "--warmup", "5", "--count", "10"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "| pybreaker + CircuitRedisStorage: call |" in out
    assert "| limits moving window: hit |" in out
    prefix = re.search(r"prefix `(guardbench-[0-9a-f]+)`", out)
    assert prefix is not None
    assert list(client.scan_iter(match=f"{prefix.group(1)}:*")) == []
