"""Workers outlive their Redis: kill -9 and restart it under load, five times in a row."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from resilience.chaos import ChaosRule
from tests.integration.harness import Deployment, order_kwargs, wait_for
from tests.redis_process import RedisProcess, redis_process
from worker.fleet import wait_until_ready

pytestmark = pytest.mark.integration

RESTARTS = 5
DOWN_S = 3.0
ORDERS_PER_S = 5.0


@pytest.fixture
def aof_redis() -> Iterator[RedisProcess]:
    with redis_process(appendonly=True) as server:
        yield server


class _Sender(threading.Thread):
    """Sends an order every 1/ORDERS_PER_S s; while Redis is down it keeps trying the same one."""

    def __init__(self, deployment: Deployment) -> None:
        super().__init__(name="order-sender", daemon=True)
        self.deployment = deployment
        self.sent: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            order = order_kwargs(ttl_s=600)
            while not self.stopping.is_set():
                try:
                    self.deployment.submit(order)
                except (OperationalError, RedisError, OSError):
                    time.sleep(0.2)
                    continue
                self.sent.append(order["client_order_id"])
                break
            self.stopping.wait(1 / ORDERS_PER_S)


def test_workers_reconnect_after_each_of_five_redis_restarts_and_book_every_order_once(
    deployment_factory: Callable[..., Deployment], aof_redis: RedisProcess
) -> None:
    """Orders at 5/s with 200 ms injected after each booking (so acks are in flight when Redis
    dies); Redis is SIGKILLed and restarted 3 s later, five times. Every worker keeps its pid
    and answers after each restart; every order sent is accepted by the exchange exactly once.

    Before the fix a worker died with kombu's ``AttributeError: 'NoneType' object has no
    attribute 'hostname'`` while closing the broken connection (5 of 5 trials).
    """
    deployment = deployment_factory(on_redis=aof_redis.url)
    deployment.runtime.chaos.inject(
        ChaosRule("broker.submit_order", "none", latency_ms=200, phase="after")
    )
    workers = deployment.start_workers(2, concurrency=2)
    pids = [w.pid for w in workers]
    sender = _Sender(deployment)
    sender.start()
    try:
        for restart in range(RESTARTS):
            time.sleep(2.0)  # orders flowing, some of them between booking and ack
            aof_redis.restart_after(DOWN_S)
            wait_until_ready(deployment.app, workers, timeout_s=60.0)
            assert [w.process.poll() for w in workers] == [None, None], f"restart {restart + 1}"
    finally:
        sender.stopping.set()
        sender.join(timeout=30)

    sent = set(sender.sent)
    assert len(sent) >= RESTARTS * 2 * ORDERS_PER_S * 0.5
    wait_for(lambda: sent <= deployment.booked(), 90, f"all {len(sent)} orders booked")
    accepted = deployment.accepted_counts()
    assert {coid: n for coid, n in accepted.items() if n != 1} == {}
    assert deployment.dead_by_order() == {}
    assert [w.pid for w in workers] == pids
    assert [w.process.poll() for w in workers] == [None, None]
    for worker in workers:
        assert "Unrecoverable error" not in worker.log()
