"""Removes the queue bindings that releases before 0.2 declared, when a worker starts.

Those releases bound all three queues to exchange ``trading`` under routing key ``trading``,
and a broker keeps a binding after the code that made it is gone: an upgraded deployment would
go on delivering every trading task to ``market_data`` and ``escalation`` as well. The
trading queue's own binding (``trading`` → ``trading``) is today's and stays.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange
from kombu.transport.redis import Channel as RedisChannel

from tasks.routing import QUEUES, queue_declarations

__all__ = ["LEGACY_EXCHANGE", "drop_legacy_bindings"]

LEGACY_EXCHANGE = "trading"
LEGACY_ROUTING_KEY = "trading"

# kombu's Redis transport keeps an exchange's bindings in two sets of
# "<routing key>\x06\x16<pattern>\x06\x16<queue>" members (its queue_unbind only edits the
# channel's in-memory table, so the sets are edited here).
_REDIS_BINDING_SETS = ("_kombu.binding.%s", "_kombu.binding_permanent.%s")
_REDIS_MEMBER_SEP = "\x06\x16"


def _stale_queues() -> list[str]:
    return [name for name in QUEUES if name != LEGACY_EXCHANGE]


def drop_legacy_bindings(app: Celery) -> list[str]:
    """Unbind every queue but ``trading`` from (``trading``, ``trading``).

    Returns the queues unbound (over AMQP, every one asked: the broker does not say whether a
    binding existed). Idempotent: a broker without such bindings is left as it is.
    """
    stale = _stale_queues()
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        if isinstance(channel, RedisChannel):
            # The transport's client adds the deployment's key prefix itself.
            client = channel.client
            members = [_REDIS_MEMBER_SEP.join([LEGACY_ROUTING_KEY, "", queue]) for queue in stale]
            removed = 0
            for pattern in _REDIS_BINDING_SETS:
                removed += int(client.srem(pattern % LEGACY_EXCHANGE, *members))
            return stale if removed else []
        legacy = Exchange(LEGACY_EXCHANGE, type="direct")
        legacy.declare(channel=channel)
        for queue in queue_declarations():
            if queue.name in stale:
                # Declared as the worker declares it (AMQP refuses to unbind a missing queue).
                bound = queue.bind(channel)
                bound.declare()
                bound.unbind_from(legacy, routing_key=LEGACY_ROUTING_KEY)
        return stale
