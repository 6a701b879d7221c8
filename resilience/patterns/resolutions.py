"""How the failures of each error type ended, fleet-wide: what actually worked here.

One Redis hash (``<namespace>:{patterns}:resolutions``) of ``<error type>|<how>`` -> count,
bounded by the error types times the ways a failure ends:

- ``succeeded_at:<attempt>``: the task failed with it, then succeeded at that attempt;
- ``recovered:<strategy>``: a recovery strategy did the work (or made the wait that did);
- ``settled_elsewhere``: found already done before it was dead-lettered;
- ``dead_lettered``: it ended in the dead-letter store (what operators did next, replay or
  discard, is read from the store).

Recording is best effort, like the metrics: a Redis error is logged, never raised into a task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import structlog
from redis import Redis
from redis.exceptions import RedisError

from resilience.patterns.history import RETENTION_S
from resilience.storage.keys import KeySpace

__all__ = ["ResolutionLog"]

_log = structlog.get_logger("alchemiser.patterns")


class ResolutionLog:
    """Counts how failures of each error type ended."""

    def __init__(self, client: Redis, keys: KeySpace) -> None:
        self._client = client
        self._key = keys.app_key("patterns", "resolutions")

    def record(self, endings: Mapping[str, str]) -> None:
        """Count one ending per error type (``error type -> how``), in one round trip."""
        if not endings:
            return
        pipe = self._client.pipeline(transaction=False)
        for name, how in sorted(endings.items()):
            pipe.hincrby(self._key, f"{name}|{how}", 1)
        pipe.expire(self._key, RETENTION_S)
        try:
            pipe.execute()
        except RedisError as unavailable:
            _log.warning("resolution_not_recorded", endings=dict(endings), error=str(unavailable))

    def counts(self, error_type: str) -> dict[str, int]:
        """``how`` -> count for ``error_type``."""
        raw = cast("dict[str, str]", self._client.hgetall(self._key))
        prefix = f"{error_type}|"
        return {
            field.removeprefix(prefix): int(count)
            for field, count in raw.items()
            if field.startswith(prefix)
        }
