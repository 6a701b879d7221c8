"""The fleet epoch: a Redis that lost its data is noticed, and said so.

A Redis without persistence comes back from a restart empty, and an empty Redis does not say
that anything was ever in it: dead letters, breaker state, alerts and the application's data
are gone while every reader sees a quiet fleet. So the first worker to start in a namespace
writes an epoch record (an id and when), which never expires, and every worker remembers the
epoch it saw in its own memory, outside the Redis that can lose it, and looks again now and
then. The record gone, or replaced by one of another id, means that Redis lost what it held
since the last look: the worker writes a new epoch and a ``lost`` marker (kept a day), which
``health`` reports as CRITICAL. Redis' ``run_id`` (new at every start) tells a restart from a
flush or an eviction; a restart that kept the record (AOF, RDB) lost nothing worth a word.

Only a process that saw the old epoch can tell a lost one from a new namespace: a record that
nobody remembers is a new namespace, never a loss. A loss while no worker runs (every worker
restarted along with Redis) therefore goes unnoticed; the start-up warning
``redis_without_persistence`` (:mod:`resilience.storage.persistence`) is all there is then.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Protocol

from redis import Redis
from redis.exceptions import ResponseError

from resilience.policy.context import ErrorNotificationData
from resilience.storage.clock import Clock
from resilience.storage.keys import KeySpace

__all__ = [
    "DATA_LOSS_RETENTION_S",
    "DATA_LOST_ERROR_TYPE",
    "DataLoss",
    "Epoch",
    "EpochState",
    "EpochStore",
    "Look",
    "LossCause",
    "RedisServerRuns",
    "ServerRun",
    "ServerRuns",
    "Sighting",
    "to_failure",
]

# How long ``health`` stays CRITICAL after a loss: a night's incident is still seen the next
# morning. Deleting the marker clears it sooner (docs/OPERATIONS.md).
DATA_LOSS_RETENTION_S = 24 * 3600
DATA_LOST_ERROR_TYPE = "RedisDataLost"
# uuid5 namespace of the loss's error id: every worker that notices one loss names it alike.
_LOSS_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "alchemiser:data-loss")


@dataclass(frozen=True, slots=True)
class Epoch:
    """One life of the namespace's data in Redis."""

    epoch_id: str
    created_at: float  # seconds since the Unix epoch, on the fleet's clock


@dataclass(frozen=True, slots=True)
class ServerRun:
    """One run of the Redis server: ``run_id`` is new at every start."""

    run_id: str
    uptime_s: float


class ServerRuns(Protocol):
    """The Redis server's current run, or None where it will not say."""

    def current(self) -> ServerRun | None: ...


class RedisServerRuns:
    """``INFO server`` of the client's Redis (a managed service may refuse INFO: None)."""

    def __init__(self, client: Redis) -> None:
        self._client = client

    def current(self) -> ServerRun | None:
        try:
            info = self._client.info("server")
        except ResponseError:
            return None
        return ServerRun(str(info["run_id"]), float(info["uptime_in_seconds"]))


@dataclass(frozen=True, slots=True)
class Sighting:
    """What a worker saw at its last look."""

    epoch: Epoch
    run: ServerRun | None
    seen_at: float


class LossCause(enum.StrEnum):
    """How the data went, as far as the server's run tells."""

    RESTARTED = "restarted"  # run_id changed: a restart without persistence
    NOT_RESTARTED = "not_restarted"  # same run: flushed, evicted or deleted
    UNKNOWN = "unknown"  # the server does not say its run


_HOW = {
    LossCause.RESTARTED: "Redis restarted: run_id changed",
    LossCause.NOT_RESTARTED: "Redis did not restart: flushed, evicted or deleted",
    LossCause.UNKNOWN: "Redis does not say whether it restarted",
}


@dataclass(frozen=True, slots=True)
class DataLoss:
    """Redis lost what it held: the epoch a worker remembered is gone."""

    lost_epoch: str
    epoch: str  # the epoch written since
    cause: LossCause
    last_seen_at: float  # the last look that found the lost epoch
    noticed_at: float
    restarted_at: float | None = None  # when the Redis that came back empty started

    @property
    def lost_at(self) -> float:
        """When the data went: the restart, else the latest it can have been."""
        return self.noticed_at if self.restarted_at is None else self.restarted_at

    @property
    def message(self) -> str:
        if self.restarted_at is not None:
            when = f"at {_iso(self.restarted_at)}"
        else:
            when = f"between {_iso(self.last_seen_at)} and {_iso(self.noticed_at)}"
        return (
            f"Redis lost its data {when} (epoch {self.lost_epoch} gone;"
            f" {_HOW[self.cause]}): dead letters, breaker state, alerts and the application's data"
            " written before then are gone; check Redis persistence (AOF)"
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> DataLoss:
        fields = json.loads(raw)
        return cls(**{**fields, "cause": LossCause(fields["cause"])})


def to_failure(loss: DataLoss) -> ErrorNotificationData:
    """The escalation path's input for ``loss`` (``tasks.escalate(notification=...)``)."""
    return {
        "severity": "critical",
        "priority": "P1",
        "title": f"{DATA_LOST_ERROR_TYPE} in redis: epoch {loss.lost_epoch} gone",
        "error_type": DATA_LOST_ERROR_TYPE,
        "error_id": str(uuid.uuid5(_LOSS_IDS, loss.lost_epoch)),
        "message": loss.message,
        "component": "redis",
        "operation": "epoch",
        "task_name": "",
        "occurred_at": datetime.fromtimestamp(loss.lost_at, UTC).isoformat(),
        "reason": "the fleet epoch a worker remembered is gone from Redis",
    }


@dataclass(frozen=True, slots=True)
class Look:
    """What one look found."""

    sighting: Sighting
    loss: DataLoss | None = None  # Redis lost its data since the previous look
    recorded: bool = False  # this look wrote the loss marker: its worker is the one to escalate
    restarted: bool = False  # Redis restarted since the previous look and kept the epoch


@dataclass(frozen=True, slots=True)
class EpochState:
    """What ``health`` reads: the current epoch (None: no worker started yet), the last loss."""

    epoch: Epoch | None
    loss: DataLoss | None


class EpochStore:
    """The namespace's epoch record and loss marker in Redis."""

    def __init__(
        self,
        client: Redis,
        keys: KeySpace,
        clock: Clock,
        *,
        runs: ServerRuns | None = None,
    ) -> None:
        self._client = client
        self._keys = keys
        self._clock = clock
        self._runs = runs or RedisServerRuns(client)

    def look(self, last: Sighting | None) -> Look:
        """Look at the epoch, writing it if there is none; compared with ``last`` (what this
        process saw before, None at its first look), a loss is recorded once for the fleet."""
        run = self._runs.current()
        now = self._clock.now_s()
        epoch = self._read_epoch() or self._start_epoch(now)
        seen = Sighting(epoch, run, now)
        if last is None:
            return Look(seen)
        if epoch.epoch_id == last.epoch.epoch_id:
            restarted = run is not None and last.run is not None and run.run_id != last.run.run_id
            return Look(seen, restarted=restarted)
        loss = _loss(last, seen)
        # NX: the workers that notice one loss record it once (and one of them escalates it).
        recorded = self._client.set(
            self._keys.data_lost, loss.to_json(), nx=True, ex=DATA_LOSS_RETENTION_S
        )
        return Look(seen, loss, recorded=bool(recorded))

    def read(self) -> EpochState:
        pipe = self._client.pipeline(transaction=False)
        pipe.get(self._keys.epoch)
        pipe.get(self._keys.data_lost)
        epoch, loss = pipe.execute()
        return EpochState(
            epoch=None if epoch is None else Epoch(**json.loads(epoch)),
            loss=None if loss is None else DataLoss.from_json(loss),
        )

    def _read_epoch(self) -> Epoch | None:
        raw = self._client.get(self._keys.epoch)
        return None if raw is None else Epoch(**json.loads(raw))

    def _start_epoch(self, now: float) -> Epoch:
        fresh = Epoch(uuid.uuid4().hex[:12], now)
        # No expiry: the record must outlive any quiet spell to tell a loss from a new namespace.
        if self._client.set(self._keys.epoch, json.dumps(asdict(fresh)), nx=True):
            return fresh
        # Another worker wrote one first: that is the fleet's.
        return self._read_epoch() or fresh


def _loss(last: Sighting, seen: Sighting) -> DataLoss:
    if last.run is None or seen.run is None:
        cause, restarted_at = LossCause.UNKNOWN, None
    elif seen.run.run_id != last.run.run_id:
        cause, restarted_at = LossCause.RESTARTED, seen.seen_at - seen.run.uptime_s
    else:
        cause, restarted_at = LossCause.NOT_RESTARTED, None
    return DataLoss(
        lost_epoch=last.epoch.epoch_id,
        epoch=seen.epoch.epoch_id,
        cause=cause,
        last_seen_at=last.seen_at,
        noticed_at=seen.seen_at,
        restarted_at=restarted_at,
    )


def _iso(at_s: float) -> str:
    return datetime.fromtimestamp(at_s, UTC).isoformat(timespec="seconds")
