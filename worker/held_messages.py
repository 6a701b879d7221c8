"""The Redis broker's unacknowledged messages, read from kombu's keys for health and metrics.

kombu keeps every message a worker took in ``<prefix>unacked`` and its delivery time in the
sorted set ``<prefix>unacked_index``; live workers renew that time (``worker.transport``), so
its oldest score tells how long the longest-waiting message has had no live owner.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis

from resilience.observability.held_messages import HeldMessages
from resilience.storage.connection import connect
from resilience.storage.keys import KeySpace
from worker.settings import Settings

__all__ = ["HeldMessageReader", "held_message_reader"]

# kombu's default name of the sorted set (we do not override ``unacked_index_key``).
UNACKED_INDEX = "unacked_index"


class HeldMessageReader:
    """Reads :class:`HeldMessages` from one Redis broker."""

    def __init__(
        self,
        broker: Redis,
        index_key: str,
        visibility_timeout_s: float,
        *,
        now_s: Callable[[], float] = time.time,
    ) -> None:
        self._broker = broker
        self._index_key = index_key
        self._visibility_timeout_s = visibility_timeout_s
        # Leases are stamped with the workers' wall clocks, as kombu's restore sweep reads them.
        self._now_s = now_s

    def read(self) -> HeldMessages:
        now_s = self._now_s()
        pipe = self._broker.pipeline(transaction=False)
        pipe.zcard(self._index_key)
        pipe.zcount(self._index_key, "-inf", now_s - self._visibility_timeout_s)
        pipe.zrange(self._index_key, 0, 0, withscores=True)
        held, past_timeout, oldest = pipe.execute()
        oldest_age_s = max(0.0, now_s - float(oldest[0][1])) if oldest else 0.0
        return HeldMessages(
            held=int(held),
            past_timeout=int(past_timeout),
            oldest_lease_age_s=oldest_age_s,
            visibility_timeout_s=self._visibility_timeout_s,
        )


def held_message_reader(settings: Settings, keys: KeySpace) -> HeldMessageReader | None:
    """The reader for the configured broker; ``None`` when it is not Redis (AMQP brokers give
    a lost consumer's messages back at once, with no visibility timeout)."""
    if not settings.broker_is_redis:
        return None
    return HeldMessageReader(
        connect(settings.effective_broker_url, socket_timeout_s=settings.redis_socket_timeout_s),
        keys.broker_prefix + UNACKED_INDEX,
        settings.visibility_timeout_s,
    )
