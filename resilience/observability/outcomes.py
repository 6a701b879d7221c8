"""Fleet-wide task outcome counters in Redis (retried, deferred, recovered, dead-lettered).

Only the exceptional paths write here, so a task that succeeds first time costs nothing.
Counting is best effort: a counter that cannot be written is logged, never allowed to fail
(and so lose) the task being counted.
"""

from __future__ import annotations

from typing import cast

import structlog
from redis import Redis
from redis.exceptions import RedisError

from resilience.storage.keys import KeySpace

__all__ = ["OutcomeCounter"]

_log = structlog.get_logger("alchemiser.outcomes")


class OutcomeCounter:
    """Counters per ``<outcome>`` and ``<outcome>:<task name>``."""

    def __init__(self, client: Redis, keys: KeySpace) -> None:
        self._client = client
        self._key = keys.outcomes

    def incr(self, outcome: str, task: str, amount: int = 1) -> None:
        """Count one outcome of ``task``."""
        pipe = self._client.pipeline(transaction=False)
        pipe.hincrby(self._key, outcome, amount)
        pipe.hincrby(self._key, f"{outcome}:{task}", amount)
        try:
            pipe.execute()
        except RedisError as unavailable:
            _log.warning("outcome_not_counted", outcome=outcome, task=task, error=str(unavailable))

    def totals(self) -> dict[str, int]:
        """Every counter."""
        raw = cast("dict[str, str]", self._client.hgetall(self._key))
        return {name: int(value) for name, value in raw.items()}
