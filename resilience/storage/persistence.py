"""Whether a Redis keeps its data across a restart (AOF or RDB snapshots).

Dead letters, the paper broker's orders, breaker state and alerts live in Redis. A Redis with
neither AOF nor RDB loses all of them on a restart, silently: workers warn about it at start.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from redis.exceptions import ResponseError

__all__ = ["Persistence", "persistence_of"]


@dataclass(frozen=True, slots=True)
class Persistence:
    """What the server says of its persistence; ``None`` where it will not say."""

    aof: bool
    rdb: bool | None

    @property
    def durable(self) -> bool | None:
        """True with AOF or RDB on, False with both off, None when RDB cannot be read."""
        if self.aof or self.rdb:
            return True
        return None if self.rdb is None else False


def persistence_of(client: Redis) -> Persistence:
    """Read AOF from ``INFO persistence`` and RDB from ``CONFIG GET save`` (managed services
    often refuse CONFIG: RDB is then unknown)."""
    info = client.info("persistence")
    aof = str(info.get("aof_enabled", "0")) in ("1", "True", "true")
    try:
        save = client.config_get("save").get("save", "")
    except ResponseError:
        return Persistence(aof=aof, rdb=None)
    return Persistence(aof=aof, rdb=bool(str(save).strip()))
