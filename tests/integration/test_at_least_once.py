"""No lost task, no duplicate order: crashes, poison messages and replays on real workers."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from resilience.chaos import ChaosRule
from resilience.deadletter.replay import Replayer
from tasks.replay import prepare_replay, replay_publisher
from tests.integration.harness import Deployment, order_kwargs, wait_for

pytestmark = pytest.mark.integration

# Short visibility timeout so the messages a killed worker held are restored quickly;
# countdowns stay below it (the settings refuse anything else).
FAST_RESTORE = {"ALCHEMISER_VISIBILITY_TIMEOUT_S": "6", "ALCHEMISER_MAX_COUNTDOWN_S": "4"}


def _settled(deployment: Deployment, ids: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        done = deployment.booked() | set(deployment.dead_by_order())
        return all(i in done for i in ids)

    return check


def test_kill_9_mid_submit_loses_no_order_and_accepts_none_twice(
    deployment_factory: Callable[..., Deployment],
) -> None:
    """200 orders; the whole worker is SIGKILLed mid-run; a new worker finishes: each order
    is accepted exactly once or dead-lettered, and no client_order_id is accepted twice."""
    deployment = deployment_factory(**FAST_RESTORE)
    chaos = deployment.runtime.chaos
    # Slow both sides of the booking so the kill lands inside submit_order, also between
    # booking and acknowledgement (the ambiguous case).
    chaos.inject(ChaosRule("broker.submit_order", "none", latency_ms=15))
    chaos.inject(ChaosRule("broker.submit_order", "none", latency_ms=15, phase="after"))
    (first,) = deployment.start_workers(concurrency=2)
    orders = [order_kwargs(qty=1) for _ in range(200)]
    ids = [o["client_order_id"] for o in orders]
    for order in orders:
        deployment.submit(order)
    wait_for(lambda: len(deployment.booked()) >= 40, 60, "40 orders booked before the kill")
    first.kill()
    booked_at_kill = len(deployment.booked())
    assert booked_at_kill < 200, "the kill came too late to interrupt anything"

    deployment.start_workers(concurrency=2)
    # The killed worker's messages come back within the visibility timeout (6 s) plus one
    # restore interval (10 s); kombu's default throttle made that up to 100 s more.
    wait_for(_settled(deployment, ids), 45, "every order booked or dead-lettered")

    accepted = deployment.accepted_counts()
    assert [coid for coid, n in accepted.items() if n > 1] == []
    dead = deployment.dead_by_order()
    unaccounted = [c for c in ids if accepted[c] != 1 and c not in dead]
    assert unaccounted == []


def test_replay_after_faults_clear_accepts_each_order_exactly_once(
    deployment: Deployment,
) -> None:
    """Orders dead-lettered after lost responses (some booked, some not) are replayed and each
    ends accepted exactly once: the replay finds the booked ones by client_order_id."""
    chaos = deployment.runtime.chaos
    chaos.inject(ChaosRule("broker.submit_order", "http:503", probability=0.5))
    chaos.inject(ChaosRule("broker.submit_order", "TimeoutError", phase="after"))
    chaos.inject(ChaosRule("broker.get_order", "http:503"))
    deployment.start_workers(concurrency=2)
    orders = [order_kwargs("MSFT", 1) for _ in range(20)]
    ids = [o["client_order_id"] for o in orders]
    for order in orders:
        deployment.submit(order)
    store = deployment.runtime.resilience.dead_letters
    wait_for(lambda: len(store.entries(status="dead")) == 20, 90, "20 dead letters")
    booked_before_replay = deployment.booked() & set(ids)
    assert booked_before_replay, "no order reached the broker before failing"
    assert len(booked_before_replay) < 20, "every order reached the broker"

    chaos.clear()

    replayer = Replayer(
        store, prepare=prepare_replay(now_s=time.time), publish=replay_publisher(deployment.app)
    )
    results = [replayer.replay(e.id, actor="test") for e in store.entries(status="dead")]
    assert [r.outcome for r in results] == ["replayed"] * 20
    wait_for(lambda: set(ids) <= deployment.booked(), 60, "every replayed order booked")
    # The replays of orders booked before the failure book nothing new, so "every order
    # booked" can hold before they have run; wait for each of them to find its order.
    outcomes = deployment.runtime.resilience.outcomes
    wait_for(
        lambda: outcomes.totals().get("duplicate_avoided", 0) >= len(booked_before_replay),
        60,
        "every replay of a booked order found it",
    )

    accepted = deployment.accepted_counts()
    assert {coid: accepted[coid] for coid in ids} == dict.fromkeys(ids, 1)
    assert outcomes.totals()["duplicate_avoided"] == len(booked_before_replay)
    assert [e.status for e in store.entries()] == ["replayed"] * 20
    audit_actions = [r.action for r in store.audit(limit=200)]
    assert audit_actions.count("replay") == 20


def test_poison_task_is_dead_lettered_after_max_redeliveries(
    deployment_factory: Callable[..., Deployment],
) -> None:
    """A task that kills its worker process on every run is dead-lettered as poison after
    N redeliveries (here 2: three runs), and the worker keeps serving other tasks."""
    deployment = deployment_factory(ALCHEMISER_MAX_REDELIVERIES="2")
    deployment.runtime.chaos.inject(ChaosRule("broker.submit_order", "crash"))
    deployment.start_workers(concurrency=1)
    poison = order_kwargs()
    task_id = deployment.submit(poison)
    entry = deployment.dead_letter(task_id, 90)
    assert entry.error_type == "PoisonMessageError"
    assert entry.reason == "poison message"
    assert deployment.runtime.chaos.fired() == {"broker.submit_order": 3}

    deployment.runtime.chaos.clear()
    healthy = order_kwargs()
    deployment.submit(healthy)
    wait_for(lambda: healthy["client_order_id"] in deployment.booked(), 30, "a healthy order")
    assert poison["client_order_id"] not in deployment.booked()
