"""Admission while Redis cannot be asked: each resource's ``fail_mode`` decides (open: let the
run through; closed: defer it), every decision is logged and counted in the process, and the
counts reach the resources' fleet-wide stats (``limits list``) once Redis answers again."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence

import structlog
from redis import Redis
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from resilience.guard.answers import Admission
from resilience.guard.resources import ResourceConfig

__all__ = ["WithoutRedis"]

_log = structlog.get_logger("alchemiser.guard")

# Index of a resource's stats hash among KeySpace.resource(name)'s keys.
_STATS_KEY = 7


class WithoutRedis:
    """The fail-mode decisions of one :class:`~resilience.guard.admission.Guard`."""

    def __init__(
        self,
        client: Redis,
        resources: Mapping[str, ResourceConfig],
        resource_keys: Mapping[str, Sequence[str]],
    ) -> None:
        self._client = client
        self._resources = resources
        self._resource_keys = resource_keys
        self._lock = threading.Lock()
        # "<resource>:admitted|refused": every decision of this process, and those not yet
        # added to the resources' stats.
        self.decisions: Counter[str] = Counter()
        self._unreported: Counter[str] = Counter()

    def decide(self, names: Sequence[str], ticket: str, error: RedisError) -> Admission:
        """The fail modes' answer for ``names``: refused if any of them fails closed."""
        closed = [n for n in names if self._resources[n].fail_mode == "closed"]
        decision = "refused" if closed else "admitted"
        with self._lock:
            for name in names:
                self.decisions[f"{name}:{decision}"] += 1
                self._unreported[f"{name}:{decision}"] += 1
        # A script or encoding error is a defect, not an outage: same fail mode, louder.
        log = _log.warning if isinstance(error, (ConnectionError, TimeoutError)) else _log.error
        log(
            "admission_without_redis",
            resources=list(names),
            decision=decision,
            fail_closed=closed,
            error=str(error),
        )
        if closed:
            return Admission(
                admitted=False,
                ticket=ticket,
                retry_after_s=max(self._resources[n].fail_closed_retry_s for n in closed),
                refused_by=closed[0],
                reason="redis unavailable (fail closed)",
                degraded=True,
            )
        return Admission(admitted=True, ticket=ticket, degraded=True)

    def report(self) -> None:
        """Add the decisions not yet reported to the resources' stats, now that Redis answers
        (kept for the next time if it does not after all)."""
        if not self._unreported:
            return
        with self._lock:
            counts, self._unreported = self._unreported, Counter()
        pipe = self._client.pipeline(transaction=False)
        for key, count in counts.items():
            name, _, decision = key.rpartition(":")
            pipe.hincrby(self._resource_keys[name][_STATS_KEY], f"without_redis:{decision}", count)
        try:
            pipe.execute()
        except RedisError:
            with self._lock:
                self._unreported.update(counts)
