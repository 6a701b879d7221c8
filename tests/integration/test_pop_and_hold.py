"""A message is always on its queue or held: never only in a worker's socket.

kombu's BRPOP took a message off the queue before the worker recorded it as unacknowledged; a
worker killed in between (its reply unread while the event loop was busy) lost the message for
good. The soak lost 1 order in 1,000 that way. The pop script takes and records in one step.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

import pytest
from redis import Redis

from resilience.storage.scripts import lua_source
from tests.integration.harness import Deployment, order_kwargs, wait_for

pytestmark = pytest.mark.integration

FAST = {"ALCHEMISER_VISIBILITY_TIMEOUT_S": "8", "ALCHEMISER_MAX_COUNTDOWN_S": "4"}


def _pop(client: Redis, prefix: str, now_s: float) -> object:
    keys = [f"{prefix}trading", f"{prefix}unacked", f"{prefix}unacked_index"]
    return client.eval(lua_source("worker", "pop_and_hold"), len(keys), *keys, repr(now_s))


def test_the_script_pops_and_records_a_message_in_one_step(redis_url: str) -> None:
    client = Redis.from_url(redis_url, decode_responses=True)
    prefix = f"it-pop-{os.getpid()}-{time.monotonic_ns()}:"
    envelope = json.dumps(
        {
            "body": "e30=",
            "properties": {
                "delivery_tag": "tag-1",
                "delivery_info": {"exchange": "trading", "routing_key": "trading"},
            },
        }
    )
    try:
        client.lpush(f"{prefix}trading", envelope, "not json")  # RPOP takes the envelope first
        assert _pop(client, prefix, 1_800_000_000.5) == [f"{prefix}trading", envelope]
        assert client.hget(f"{prefix}unacked", "tag-1") == f'[{envelope},"trading","trading"]'
        assert client.zscore(f"{prefix}unacked_index", "tag-1") == 1_800_000_000.5
        # Not a kombu message: handed over unrecorded (the worker quarantines it).
        assert _pop(client, prefix, 1_800_000_001.0) == [f"{prefix}trading", "not json"]
        assert client.hlen(f"{prefix}unacked") == 1
        assert _pop(client, prefix, 1_800_000_002.0) is None
    finally:
        client.delete(f"{prefix}trading", f"{prefix}unacked", f"{prefix}unacked_index")


def test_an_order_sent_to_a_frozen_worker_that_is_then_killed_is_booked_once(
    deployment_factory: Callable[..., Deployment],
) -> None:
    """The worker's main process is stopped (SIGSTOP) while idle, an order is sent, the worker
    is killed: the order stays on its queue or held for all that time, and the next worker
    books it once. With BRPOP outstanding, the stopped worker's socket took it and it was gone."""
    deployment = deployment_factory(**FAST)
    (frozen,) = deployment.start_workers(concurrency=1)
    namespace = deployment.settings.namespace
    os.kill(frozen.pid, signal.SIGSTOP)
    order = order_kwargs()
    deployment.submit(order)

    def queued_or_held() -> bool:
        queued = deployment.redis.lrange(f"{namespace}:trading", 0, -1)
        held = deployment.redis.hvals(f"{namespace}:unacked")
        return any(order["client_order_id"] in item for item in [*queued, *held])

    # Watch the message for a second (the old BRPOP took it within milliseconds).
    watch_until = time.monotonic() + 1.0
    while time.monotonic() < watch_until:
        assert queued_or_held(), "the message is neither on its queue nor held"
        time.sleep(0.02)
    frozen.kill()
    deployment.start_workers(concurrency=1)
    wait_for(lambda: order["client_order_id"] in deployment.booked(), 30, "the order booked")
    assert deployment.accepted_counts()[order["client_order_id"]] == 1
