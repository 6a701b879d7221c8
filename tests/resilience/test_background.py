"""Successful outcomes recorded off the task's critical path (resilience.background)."""

from __future__ import annotations

import multiprocessing
import os

import redis

from resilience.background import BackgroundScripts
from resilience.clock import ManualClock
from resilience.connection import connect
from resilience.guard import MAX_RELEASING, Guard, Outcome
from resilience.keys import KeySpace
from resilience.resources import BreakerConfig, ConcurrencyConfig, ResourceConfig

RESOURCES = {
    "api": ResourceConfig(
        name="api",
        breaker=BreakerConfig(minimum_calls=2, permitted_calls_in_half_open=1, wait_jitter=0),
    ),
    "single": ResourceConfig(name="single", concurrency=ConcurrencyConfig(limit=1)),
}


def _guard(client: redis.Redis, keys: KeySpace, clock: ManualClock) -> Guard:
    return Guard(client, keys, RESOURCES, server_clock=clock, background=BackgroundScripts(client))


def _window(client: redis.Redis, keys: KeySpace) -> dict[str, str]:
    return client.hgetall(keys.resource("api")[1])  # type: ignore[return-value]


def test_a_success_is_recorded_after_flush_not_before_the_task_returns(
    client: redis.Redis, keys: KeySpace
) -> None:
    """record(OK) returns at once; after flush the window counted it."""
    guard = _guard(client, keys, ManualClock())
    admissions = [guard.admit(["api"]) for _ in range(3)]
    for admission in admissions:
        assert guard.record(admission, Outcome.OK).retry_allowed
    assert guard.flush(timeout_s=5.0)
    assert (_window(client, keys)["calls"], _window(client, keys)["fails"]) == ("3", "0")


def test_a_concurrency_lease_is_back_before_record_returns(
    client: redis.Redis, keys: KeySpace
) -> None:
    """With a limit of 1, the run after a success is admitted at once: the lease is not left
    to the background sender (released late, it refused every other run)."""
    guard = _guard(client, keys, ManualClock())
    for _ in range(20):
        admission = guard.admit(["single"])
        assert admission.admitted, admission.reason
        guard.record(admission, Outcome.OK)


def test_failures_stay_synchronous(client: redis.Redis, keys: KeySpace) -> None:
    """A failure's record answers the retry budget and trips the breaker before returning."""
    guard = _guard(client, keys, ManualClock())
    first, second = guard.admit(["api"]), guard.admit(["api"])
    assert guard.record(first, Outcome.FAILED).transitions == ()
    assert guard.record(second, Outcome.FAILED).transitions == (("api", "closed>open"),)


def test_a_background_probe_success_closes_the_breaker(client: redis.Redis, keys: KeySpace) -> None:
    """The half-open probe's success, recorded in the background, still closes it."""
    clock = ManualClock()
    guard = _guard(client, keys, clock)
    for _ in range(2):
        guard.record(guard.admit(["api"]), Outcome.FAILED)
    clock.advance(31)
    guard.forget_open()
    probe = guard.admit(["api"])
    assert probe.admitted and probe.permits[0].probe
    guard.record(probe, Outcome.OK)
    assert guard.flush(timeout_s=5.0)
    assert client.hget(keys.resource("api")[0], "state") == "closed"


def _record_in_child(redis_url: str, namespace: str, start_s: float) -> None:
    client = connect(redis_url)
    guard = Guard(
        client,
        KeySpace(namespace),
        RESOURCES,
        server_clock=ManualClock(start_s),
        background=SHARED_BACKGROUND[0],
    )
    guard.record(guard.admit(["api"]), Outcome.OK)
    os._exit(0 if guard.flush(timeout_s=5.0) else 1)


SHARED_BACKGROUND: list[BackgroundScripts] = []


def test_a_forked_child_gets_its_own_sender(
    client: redis.Redis, keys: KeySpace, redis_url: str
) -> None:
    """A prefork child inherits the parent's queue object but not its thread: it starts one."""
    parent = BackgroundScripts(connect(redis_url))
    guard = Guard(client, keys, RESOURCES, server_clock=ManualClock(), background=parent)
    guard.record(guard.admit(["api"]), Outcome.OK)
    assert guard.flush(timeout_s=5.0)
    SHARED_BACKGROUND[:] = [parent]
    child = multiprocessing.get_context("fork").Process(
        target=_record_in_child, args=(redis_url, keys.namespace, ManualClock().now_s())
    )
    child.start()
    child.join(timeout=20)
    assert child.exitcode == 0
    assert _window(client, keys)["calls"] == "2"


def test_leases_released_by_the_next_admission_are_forgotten_once_recorded(
    client: redis.Redis, keys: KeySpace
) -> None:
    """The tickets this process releases itself are dropped once their records land; the
    other processes see the lease back then."""
    guard = _guard(client, keys, ManualClock())
    other = Guard(client, keys, RESOURCES, server_clock=ManualClock())
    admission = guard.admit(["single"])
    guard.record(admission, Outcome.OK)
    assert guard.flush(timeout_s=5.0)
    assert client.zcard(keys.resource("single")[5]) == 0
    assert other.admit(["single"]).admitted
    assert guard._releasing == []


def test_a_record_that_cannot_be_sent_does_not_pin_its_ticket(
    client: redis.Redis, keys: KeySpace
) -> None:
    """Redis unreachable for the background sender: the ticket is let go all the same (the
    lease expires on its own)."""
    dead = connect("redis://127.0.0.1:1/0", socket_timeout_s=0.2, connect_timeout_s=0.2, retries=0)
    guard = Guard(
        client, keys, RESOURCES, server_clock=ManualClock(), background=BackgroundScripts(dead)
    )
    guard.record(guard.admit(["single"]), Outcome.OK)
    assert guard.flush(timeout_s=5.0)
    assert guard._releasing == []


def test_a_stuck_sender_makes_records_synchronous_again(
    client: redis.Redis, keys: KeySpace
) -> None:
    """If the background sender stops keeping up, the tickets every admission carries stop
    growing: past MAX_RELEASING, records are sent synchronously."""
    stuck = BackgroundScripts(client)
    stuck.submit = lambda *args, **kwargs: None  # type: ignore[method-assign]
    guard = Guard(client, keys, RESOURCES, server_clock=ManualClock(), background=stuck)
    for _ in range(MAX_RELEASING + 10):
        admission = guard.admit(["single"])
        assert admission.admitted, admission.reason
        guard.record(admission, Outcome.OK)
    assert len(guard._releasing) == MAX_RELEASING
