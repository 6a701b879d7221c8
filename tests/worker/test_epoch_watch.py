"""A worker's watch of the fleet epoch (worker.epoch_watch): the loss logged once, escalated by
the worker that recorded it, a Redis that is away never raised into the consumer. fakeredis,
a scripted server run, a manual clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import fakeredis
import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from resilience.policy.context import ErrorNotificationData
from resilience.storage.clock import ManualClock
from resilience.storage.epoch import DATA_LOST_ERROR_TYPE, EpochStore, ServerRun
from resilience.storage.keys import KeySpace
from worker.epoch_watch import EpochWatch

KEYS = KeySpace("watch-test")

RUN_A = ServerRun("run-a", 100.0)


@dataclass
class Runs:
    run: ServerRun | None = RUN_A
    away: bool = False

    def current(self) -> ServerRun | None:
        if self.away:
            raise RedisConnectionError("Connection refused")
        return self.run


@dataclass
class Escalations:
    sent: list[ErrorNotificationData]
    fail: bool = False

    def __call__(self, failure: ErrorNotificationData) -> None:
        if self.fail:
            raise RedisConnectionError("broker away")
        self.sent.append(failure)


@pytest.fixture
def fake() -> redis.Redis:
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def runs() -> Runs:
    return Runs()


def watch(fake: redis.Redis, runs: Runs, escalations: Escalations) -> EpochWatch:
    return EpochWatch(EpochStore(fake, KEYS, ManualClock(), runs=runs), escalations)


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def test_a_loss_is_logged_critical_once_and_escalated_once(fake: redis.Redis, runs: Runs) -> None:
    escalations = Escalations([])
    one, two = watch(fake, runs, escalations), watch(fake, runs, escalations)
    with capture_logs() as logs:
        one.look()
        two.look()
        fake.flushall()
        runs.run = ServerRun("run-b", 1.0)
        for _ in range(3):
            one.look()
            two.look()
    lost = events(logs, "redis_data_lost")
    assert len(lost) == 2  # once by each worker
    assert {entry["log_level"] for entry in lost} == {"critical"}
    assert lost[0]["message"].startswith("Redis lost its data at ")
    assert lost[0]["cause"] == "restarted"
    assert [f["error_type"] for f in escalations.sent] == [DATA_LOST_ERROR_TYPE]


def test_a_restart_that_kept_the_data_is_logged_as_such(fake: redis.Redis, runs: Runs) -> None:
    escalations = Escalations([])
    watcher = watch(fake, runs, escalations)
    with capture_logs() as logs:
        watcher.look()
        runs.run = ServerRun("run-b", 1.0)
        watcher.look()
        watcher.look()
    assert [e["event"] for e in logs] == ["redis_restarted"]
    assert escalations.sent == []


def test_redis_away_is_logged_once_and_the_loss_still_seen_when_it_is_back(
    fake: redis.Redis, runs: Runs
) -> None:
    escalations = Escalations([])
    watcher = watch(fake, runs, escalations)
    with capture_logs() as logs:
        watcher.look()
        runs.away = True
        watcher.look()
        watcher.look()
        fake.flushall()
        runs.away, runs.run = False, ServerRun("run-b", 1.0)
        watcher.look()
    assert [e["event"] for e in logs] == [
        "epoch_check_failed",
        "redis_data_lost",
    ]


def test_a_failed_escalation_is_logged_and_the_loss_not_reported_again(
    fake: redis.Redis, runs: Runs
) -> None:
    escalations = Escalations([], fail=True)
    watcher = watch(fake, runs, escalations)
    with capture_logs() as logs:
        watcher.look()
        fake.flushall()
        runs.run = ServerRun("run-b", 1.0)
        watcher.look()
        watcher.look()
    assert [e["event"] for e in logs] == ["redis_data_lost", "data_loss_not_escalated"]
