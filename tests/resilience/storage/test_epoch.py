"""The fleet epoch (resilience.storage.epoch) on fakeredis: a Redis that lost its data is told from
a new namespace and from a restart that kept its data. The server's run is scripted (fakeredis
has no ``INFO``); time is a manual clock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import fakeredis
import pytest
import redis

from resilience.storage.clock import ManualClock
from resilience.storage.epoch import (
    DATA_LOSS_RETENTION_S,
    DATA_LOST_ERROR_TYPE,
    DataLoss,
    EpochStore,
    LossCause,
    ServerRun,
    to_failure,
)
from resilience.storage.keys import KeySpace

KEYS = KeySpace("epoch-test")
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC).timestamp()

RUN_A = ServerRun("run-a", 100.0)


@dataclass
class Runs:
    """The server's run as a test sets it: None when the server will not say."""

    run: ServerRun | None = RUN_A

    def current(self) -> ServerRun | None:
        return self.run


@pytest.fixture
def fake() -> redis.Redis:
    """A Redis of the test's own (fakeredis: it can be flushed)."""
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def runs() -> Runs:
    return Runs()


@pytest.fixture
def store(fake: redis.Redis, clock: ManualClock, runs: Runs) -> EpochStore:
    return EpochStore(fake, KEYS, clock, runs=runs)


def restart_empty(fake: redis.Redis, runs: Runs, *, uptime_s: float = 3.0) -> None:
    """What a Redis without persistence does on a restart: a new run, nothing kept."""
    fake.flushall()
    runs.run = ServerRun("run-b", uptime_s)


def test_the_first_look_writes_an_epoch_without_expiry_and_reports_nothing(
    store: EpochStore, fake: redis.Redis
) -> None:
    assert store.read().epoch is None
    seen = store.look(None)
    assert (seen.loss, seen.recorded, seen.restarted) == (None, False, False)
    assert seen.sighting.epoch.created_at == START
    assert store.read().epoch == seen.sighting.epoch
    assert fake.ttl(KEYS.epoch) == -1


def test_every_worker_of_the_fleet_adopts_the_epoch_the_first_one_wrote(
    fake: redis.Redis, clock: ManualClock, runs: Runs
) -> None:
    first = EpochStore(fake, KEYS, clock, runs=runs).look(None)
    clock.advance(30)
    second = EpochStore(fake, KEYS, clock, runs=runs).look(None)
    assert second.sighting.epoch == first.sighting.epoch


def test_a_brand_new_namespace_is_never_a_loss(store: EpochStore) -> None:
    """No epoch ever written and nobody remembering one: the first look starts the epoch."""
    assert store.look(None).loss is None
    assert store.read().loss is None


def test_a_restart_that_kept_the_epoch_is_no_loss_but_is_seen(
    store: EpochStore, runs: Runs, clock: ManualClock
) -> None:
    before = store.look(None)
    runs.run = ServerRun("run-b", 2.0)  # AOF reloaded: the epoch is still there
    clock.advance(10)
    after = store.look(before.sighting)
    assert (after.loss, after.restarted) == (None, True)
    assert after.sighting.epoch == before.sighting.epoch
    assert store.look(after.sighting).restarted is False
    assert store.read().loss is None


def test_a_restart_without_persistence_is_a_loss_recorded_for_a_day(
    store: EpochStore, fake: redis.Redis, runs: Runs, clock: ManualClock
) -> None:
    before = store.look(None)
    clock.advance(60)
    restart_empty(fake, runs, uptime_s=3.0)
    after = store.look(before.sighting)

    loss = after.loss
    assert loss is not None and after.recorded
    assert loss.cause is LossCause.RESTARTED
    assert loss.lost_epoch == before.sighting.epoch.epoch_id
    assert loss.epoch == after.sighting.epoch.epoch_id != loss.lost_epoch
    assert loss.restarted_at == START + 57
    assert loss.lost_at == START + 57
    assert loss.message == (
        f"Redis lost its data at 2026-12-01T09:00:57+00:00 (epoch {loss.lost_epoch} gone; Redis"
        " restarted: run_id changed): dead letters, breaker state, alerts and the application's"
        " data written before then are gone; check Redis persistence (AOF)"
    )
    state = store.read()
    assert (state.epoch, state.loss) == (after.sighting.epoch, loss)
    assert fake.ttl(KEYS.data_lost) == DATA_LOSS_RETENTION_S
    assert fake.ttl(KEYS.epoch) == -1


def test_a_loss_is_reported_once_per_worker_and_recorded_once_for_the_fleet(
    fake: redis.Redis, clock: ManualClock, runs: Runs
) -> None:
    """Two workers remember the epoch; both notice the loss, only the first records it (and
    escalates), and the second adopts the epoch the first wrote; neither reports it again."""
    one = EpochStore(fake, KEYS, clock, runs=runs)
    two = EpochStore(fake, KEYS, clock, runs=runs)
    one_seen, two_seen = one.look(None).sighting, two.look(None).sighting
    restart_empty(fake, runs)
    clock.advance(5)
    one_look = one.look(one_seen)
    clock.advance(5)
    two_look = two.look(two_seen)
    assert (one_look.recorded, two_look.recorded) == (True, False)
    assert one_look.loss is not None and two_look.loss is not None
    assert two_look.sighting.epoch == one_look.sighting.epoch
    assert store_loss(fake) == one_look.loss
    assert one.look(one_look.sighting).loss is None
    assert two.look(two_look.sighting).loss is None


def store_loss(fake: redis.Redis) -> DataLoss:
    raw = fake.get(KEYS.data_lost)
    assert isinstance(raw, str)
    return DataLoss.from_json(raw)


def test_a_worker_started_after_the_loss_does_not_hide_it(
    fake: redis.Redis, clock: ManualClock, runs: Runs
) -> None:
    """A worker that starts on the emptied Redis writes a new epoch as in a new namespace; the
    worker that remembers the old one still notices that it changed."""
    old = EpochStore(fake, KEYS, clock, runs=runs)
    seen = old.look(None).sighting
    restart_empty(fake, runs)
    newcomer = EpochStore(fake, KEYS, clock, runs=runs).look(None)
    assert newcomer.loss is None
    noticed = old.look(seen)
    assert noticed.loss is not None and noticed.recorded
    assert noticed.sighting.epoch == newcomer.sighting.epoch


def test_an_epoch_gone_without_a_restart_is_a_loss_between_two_looks(
    store: EpochStore, fake: redis.Redis, clock: ManualClock
) -> None:
    """Flushed, evicted or deleted: the same run, so the loss is dated by the looks around it."""
    seen = store.look(None).sighting
    clock.advance(10)
    fake.delete(KEYS.epoch)
    loss = store.look(seen).loss
    assert loss is not None
    assert (loss.cause, loss.restarted_at, loss.lost_at) == (
        LossCause.NOT_RESTARTED,
        None,
        START + 10,
    )
    assert loss.message.startswith(
        "Redis lost its data between 2026-12-01T09:00:00+00:00 and 2026-12-01T09:00:10+00:00"
        f" (epoch {loss.lost_epoch} gone; Redis did not restart: flushed, evicted or deleted)"
    )


def test_a_server_that_does_not_say_its_run_still_shows_the_loss(
    store: EpochStore, fake: redis.Redis, runs: Runs
) -> None:
    runs.run = None
    seen = store.look(None).sighting
    fake.flushall()
    loss = store.look(seen).loss
    assert loss is not None and loss.cause is LossCause.UNKNOWN
    assert "Redis does not say whether it restarted" in loss.message


def test_the_loss_escalates_as_one_critical_failure(
    store: EpochStore, fake: redis.Redis, runs: Runs
) -> None:
    seen = store.look(None).sighting
    restart_empty(fake, runs)
    loss = store.look(seen).loss
    assert loss is not None
    failure = to_failure(loss)
    assert (failure["severity"], failure["error_type"], failure["component"]) == (
        "critical",
        DATA_LOST_ERROR_TYPE,
        "redis",
    )
    assert failure["message"] == loss.message
    assert failure["occurred_at"] == datetime.fromtimestamp(loss.lost_at, UTC).isoformat()
    assert json.loads(loss.to_json())["cause"] == "restarted"
