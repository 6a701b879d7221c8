"""Tests of permit leases (``permit_lease``): admissions granted to a process in batches, on a
real Redis with time injected. One round trip takes up to ``permits`` runs; they are spent
without Redis for at most ``ttl_s``; a failure, a breaker leaving CLOSED, a half-open probe
and a fork each end the lease; and the rate bound loosens by exactly ``ttl_s``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.errors import ConfigurationError
from resilience.guard.admission import Admission, Guard, Outcome
from resilience.guard.resource_tables import resources_from_mapping
from resilience.guard.resources import (
    BreakerConfig,
    ConcurrencyConfig,
    PermitLeaseConfig,
    RateLimitConfig,
    ResourceConfig,
    RetryBudgetConfig,
)
from resilience.storage.clock import ManualClock
from resilience.storage.connection import connect
from resilience.storage.keys import KeySpace
from tasks.resources import DEFAULT_RESOURCES
from tests.builders import breaker
from tests.forking import run_forked
from tests.namespaces import fresh_namespace

US = 1_000_000
START_S = 1_767_225_600.0
STATS = 7  # KeySpace.resource(): the stats hash


@dataclass
class CountingAdmit:
    """Wraps a guard's admission script to count the round trips it makes."""

    guard: Guard
    calls: int = 0

    def __post_init__(self) -> None:
        real = self.guard._admit

        def counted(**kwargs: Any) -> Any:
            self.calls += 1
            return real(**kwargs)

        self.guard._admit = counted  # type: ignore[assignment]


def leasing(
    name: str = "api",
    permits: int = 10,
    ttl_s: float = 0.25,
    **protections: Any,
) -> ResourceConfig:
    """A resource leasing ``permits`` per round trip; a breaker (4 calls, 50 %, no jitter)
    unless told otherwise."""
    protections.setdefault("breaker", breaker())
    return ResourceConfig(
        name=name, permit_lease=PermitLeaseConfig(permits=permits, ttl_s=ttl_s), **protections
    )


def make_guard(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, *resources: ResourceConfig
) -> CountingAdmit:
    """A guard on ``clock`` (server and monotonic time), its admissions counted."""
    guard = Guard(
        client, keys, {r.name: r for r in resources}, server_clock=clock, monotonic=clock.now_s
    )
    return CountingAdmit(guard)


def admitted_count(client: redis.Redis, keys: KeySpace, name: str = "api") -> int:
    """What the resource's stats say was admitted (runs granted, leased ones included)."""
    return int(client.hget(keys.resource(name)[STATS], "admitted") or 0)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_S)


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"permits": 1}, "permits must be at least 2"),
        ({"permits": 2.5}, "permits is a whole number, got 2.5"),
        ({"permits": True}, "permits is a whole number, got True"),
        ({"ttl_s": 0}, "ttl_s must be in (0, 60]"),
        ({"ttl_s": 61}, "ttl_s must be in (0, 60]"),
        ({"ttl_s": float("nan")}, "ttl_s must be in (0, 60]"),
    ],
)
def test_bad_lease_settings_are_refused_with_their_reason(
    settings_: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace("]", r"\]")):
        resources_from_mapping({"broker.data": {"permit_lease": settings_}}, DEFAULT_RESOURCES)


def test_a_lease_cannot_be_combined_with_a_concurrency_limit() -> None:
    with pytest.raises(
        ConfigurationError, match="permit_lease cannot be combined with concurrency"
    ):
        resources_from_mapping(
            {"broker.orders": {"permit_lease": {"permits": 5}}}, DEFAULT_RESOURCES
        )
    with pytest.raises(ConfigurationError, match="cannot be combined"):
        ResourceConfig(
            name="x", concurrency=ConcurrencyConfig(limit=2), permit_lease=PermitLeaseConfig()
        )


def test_leases_are_off_by_default_and_read_from_the_config_file() -> None:
    defaults = resources_from_mapping({}, DEFAULT_RESOURCES)
    assert all(r.permit_lease is None for r in defaults.values())
    merged = resources_from_mapping(
        {"broker.data": {"permit_lease": {"permits": 5, "ttl_s": 0.1}}}, DEFAULT_RESOURCES
    )
    assert merged["broker.data"].permit_lease == PermitLeaseConfig(permits=5, ttl_s=0.1)
    assert merged["broker.data"].breaker == defaults["broker.data"].breaker
    off = resources_from_mapping({"broker.data": {"permit_lease": False}}, base=merged)
    assert off["broker.data"].permit_lease is None


# --- spending a lease ------------------------------------------------------------------------


def grow(guard: Guard, runs: int, name: str = "api") -> list[Admission]:
    """``runs`` admissions at one instant (each asks within the TTL of the last)."""
    return [guard.admit([name]) for _ in range(runs)]


def test_batches_grow_from_one_run_to_the_lease_and_are_spent_without_redis(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Slow start: grants of 1, 2, 4, 8, then 10 (the lease) while each is spent and the
    process asks again within the TTL; 25 runs, 5 round trips, 25 admitted."""
    counted = make_guard(client, keys, clock, leasing(permits=10))
    answers = grow(counted.guard, 25)

    assert all(a.admitted for a in answers)
    asked = [i + 1 for i, a in enumerate(answers) if not a.leased]
    assert asked == [1, 2, 4, 8, 16]
    assert counted.calls == 5
    assert admitted_count(client, keys) == 25
    # A leased run carries the grant's generation, Redis time and ticket, so its outcome is
    # judged in the generation that admitted it.
    assert answers[5].permits == answers[3].permits
    assert answers[5].at_us == answers[3].at_us == int(START_S * US)
    assert answers[5].ticket == answers[3].ticket  # no lease of concurrency rides on it


def test_a_process_that_runs_rarely_asks_for_one_run_at_a_time(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Runs further apart than the TTL: every one asks Redis for itself, and the limiter
    holds no units for runs that would not come."""
    counted = make_guard(client, keys, clock, leasing(permits=10, ttl_s=0.25))
    for _ in range(6):
        assert not counted.guard.admit(["api"]).leased
        clock.advance(0.3)
    assert counted.calls == 6
    assert admitted_count(client, keys) == 6


def test_a_lease_expires_ttl_after_it_was_asked_for_and_the_next_asks_for_what_was_spent(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A grant of 8 asked for at t: 3 more runs by t + 0.249 s are leased; at t + 0.25 s the
    rest (4) has expired, so the next round trip asks for the 4 that were used."""
    counted = make_guard(client, keys, clock, leasing(permits=10, ttl_s=0.25))
    guard = counted.guard
    grow(guard, 7)  # grants 1, 2, 4
    assert not guard.admit(["api"]).leased  # the 8th run asks for 8
    assert admitted_count(client, keys) == 15
    clock.advance(0.249)
    assert all(a.leased for a in grow(guard, 3))
    clock.advance(0.001)
    late = guard.admit(["api"])
    assert late.admitted and not late.leased
    assert admitted_count(client, keys) == 15 + 4
    assert counted.calls == 5


def test_a_failure_drops_the_lease_and_the_breaker_decides_the_next_run(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A failure gives up what is left and starts again from one run per round trip."""
    counted = make_guard(client, keys, clock, leasing(permits=10))
    guard = counted.guard
    answers = grow(guard, 4)  # the 4th asks for 4: 3 left
    guard.record(answers[-1], Outcome.FAILED)
    assert counted.calls == 3
    after = grow(guard, 2)
    assert not any(a.leased for a in after)
    assert counted.calls == 5
    assert admitted_count(client, keys) == 1 + 2 + 4 + 1 + 2


def test_a_servers_retry_after_drops_the_lease_and_holds_the_next_run_back(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A 429 with Retry-After 2 s (recorded as a push, not a failure): what is left of the
    lease is not spent; the next run asks Redis and waits for the pushed-back limiter."""
    resource = leasing(permits=10, breaker=None, rate_limit=RateLimitConfig(rate=100, burst=10))
    counted = make_guard(client, keys, clock, resource)
    guard = counted.guard
    answers = grow(counted.guard, 4)  # the 4th asks for 4: 3 left
    guard.record(answers[-1], Outcome.IGNORED, push_s=2.0)
    refused = guard.admit(["api"])
    assert not refused.admitted and refused.reason == "rate limited"
    assert refused.retry_after_s == pytest.approx(2.0, abs=0.01)
    assert counted.calls == 4


def test_after_the_breaker_opens_a_process_runs_at_most_what_it_holds_within_ttl(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Another worker trips the breaker: this one spends what it holds (3 runs here; never
    more than permits - 1, within ttl_s), then asks Redis and is refused."""
    resource = leasing(permits=5, ttl_s=0.5)
    holder = make_guard(client, keys, clock, resource).guard
    tripper = make_guard(client, keys, clock, resource).guard
    grow(holder, 4)  # grants 1, 2, 4: 3 left
    for _ in range(4):
        tripper.record(tripper.admit(["api"]), Outcome.FAILED)
    assert client.hget(keys.resource("api")[0], "state") == "open"

    after = grow(holder, 5)
    assert [a.admitted for a in after] == [True] * 3 + [False] * 2
    assert all(a.leased for a in after[:3])
    assert after[3].reason == "breaker open"

    other = make_guard(client, keys, clock, resource).guard
    clock.advance(0.1)
    assert not other.admit(["api"]).admitted  # a fresh process gets no lease from an open breaker


def test_a_failure_drops_every_lease_on_the_resource_whatever_the_task(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Two task kinds lease on the same resource; the first failure of one drops the other's
    lease too, so once the breaker opens, neither runs."""
    api, extra = leasing(permits=10), leasing("extra", permits=10, breaker=None)
    counted = make_guard(client, keys, clock, api, extra)
    guard = counted.guard
    both = [guard.admit(["api", "extra"]) for _ in range(4)]  # 3 left
    assert both[-1].admitted and not both[-1].leased
    guard.record(guard.admit(["api"]), Outcome.FAILED)
    assert not guard.admit(["api", "extra"]).leased
    for _ in range(3):
        guard.record(guard.admit(["api"]), Outcome.FAILED)
    refused = guard.admit(["api", "extra"])
    assert not refused.admitted and refused.refused_by == "api"


def test_half_open_probes_are_never_leased(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    half_open = breaker(wait_duration_in_open_s=5, permitted_calls_in_half_open=2)
    counted = make_guard(client, keys, clock, leasing(permits=10, breaker=half_open))
    guard = counted.guard
    for _ in range(4):
        guard.record(guard.admit(["api"]), Outcome.FAILED)
    clock.advance(5)
    probes = grow(guard, 3)  # the second asks for 2 runs: a probe is one
    assert [a.admitted for a in probes] == [True, True, False]
    assert not any(a.leased for a in probes)
    assert all(p.probe for a in probes[:2] for p in a.permits)
    assert counted.calls == 4 + 3
    assert admitted_count(client, keys) == 4 + 2


def test_a_rate_limit_grants_only_what_it_has_room_for(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Burst 3 at 1 per second (4 units at once): grants of 1 and 2, then 1 of the 4 asked
    for; the next run waits a second."""
    resource = leasing(permits=10, breaker=None, rate_limit=RateLimitConfig(rate=1, burst=3))
    counted = make_guard(client, keys, clock, resource)
    guard = counted.guard
    answers, admitted = [], []
    for _ in range(5):
        answers.append(guard.admit(["api"]))
        admitted.append(admitted_count(client, keys))
    assert [a.admitted for a in answers] == [True] * 4 + [False]
    assert [a.leased for a in answers[:4]] == [False, False, True, False]
    assert admitted == [1, 3, 3, 4, 4]
    assert answers[3].permits[0].remaining == 0
    assert answers[4].reason == "rate limited"
    assert answers[4].retry_after_s == pytest.approx(1.0)
    clock.advance(1.0)
    assert guard.admit(["api"]).admitted
    assert counted.calls == 5


def test_a_task_with_a_resource_that_does_not_lease_asks_every_time(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    exact = ResourceConfig(name="orders", breaker=BreakerConfig(), retry_budget=RetryBudgetConfig())
    counted = make_guard(client, keys, clock, leasing(), exact)
    guard = counted.guard
    answers = [guard.admit(["api", "orders"]) for _ in range(5)]
    assert all(a.admitted and not a.leased for a in answers)
    assert counted.calls == 5
    assert admitted_count(client, keys) == 5


def test_a_forked_child_does_not_spend_its_parents_lease(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, redis_url: str
) -> None:
    counted = make_guard(client, keys, clock, leasing(permits=10))
    guard = counted.guard
    grow(guard, 2)  # grants 1 and 2: 1 left

    def child() -> int:
        guard._client = connect(redis_url)  # the parent's socket is the parent's
        return 0 if not guard.admit(["api"]).leased else 1

    assert run_forked(child) == 0
    assert guard.admit(["api"]).leased
    assert admitted_count(client, keys) == 1 + 2 + 1  # the child asked Redis for itself


def test_successes_of_leased_runs_reach_the_breaker_window(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Recorded late and settled: nine leased successes and one failure are ten calls at 10 %
    failures, so the breaker (threshold 50 %) stays closed."""
    guard = Guard(
        client,
        keys,
        {"api": leasing(permits=10)},
        server_clock=clock,
        monotonic=clock.now_s,
        record_successes_late=True,
    )
    for _ in range(9):
        guard.record(guard.admit(["api"]), Outcome.OK)
    assert guard.flush()
    guard.record(guard.admit(["api"]), Outcome.FAILED)
    window = client.hmget(keys.resource("api")[1], "calls", "fails")
    assert window == ["10", "1"]
    assert client.hget(keys.resource("api")[0], "state") in (None, "closed")


# --- the rate bound, loosened by ttl ---------------------------------------------------------


@pytest.fixture(scope="module")
def shared_client(redis_url: str) -> Iterator[redis.Redis]:
    conn = connect(redis_url, socket_timeout_s=10.0)
    yield conn
    conn.close()


@st.composite
def leased_runs(draw: st.DrawFn) -> tuple[RateLimitConfig, PermitLeaseConfig, list[int]]:
    """A limit (T of 1 s to 20 s, so keys outlive the example in real time), a lease, and run
    offsets in µs from the start, non-decreasing."""
    rate = draw(st.integers(1, 10))
    period_s = draw(st.floats(min_value=float(rate), max_value=20.0 * rate))
    limit = RateLimitConfig(rate=rate, period_s=period_s, burst=draw(st.integers(0, 6)))
    t = limit.interval_us
    lease = PermitLeaseConfig(
        permits=draw(st.integers(2, 12)), ttl_s=draw(st.integers(1, 3 * t)) / US
    )
    gap = st.one_of(st.just(0), st.integers(0, t // 4), st.integers(0, t), st.integers(0, 4 * t))
    offsets, at = [], 0
    for step in draw(st.lists(gap, min_size=1, max_size=50)):
        at += step
        offsets.append(at)
    return limit, lease, offsets


@settings(max_examples=60, deadline=None)
@given(run=leased_runs())
def test_leased_runs_in_any_interval_stay_within_the_loosened_bound(
    shared_client: redis.Redis, run: tuple[RateLimitConfig, PermitLeaseConfig, list[int]]
) -> None:
    """Runs at r_i <= r_j (each admitted run calls the API when admitted): j - i + 1 <=
    floor((r_j - r_i + ttl) / T) + burst + 1; a leased run is never more than ttl after its
    grant; and after an idle (burst + 1) T every run is admitted, as without leases."""
    limit, lease, offsets = run
    t, burst, ttl_us = limit.interval_us, limit.burst, int(lease.ttl_s * US)
    clock = ManualClock(START_S)
    start_us = int(clock.now_s() * US)
    keys = KeySpace(fresh_namespace("test-prop"))
    resource = ResourceConfig(name="api", rate_limit=limit, permit_lease=lease)
    guard = Guard(shared_client, keys, {"api": resource}, server_clock=clock, monotonic=clock.now_s)
    answers: list[tuple[int, Admission]] = []
    try:
        for offset in offsets:
            clock.set((start_us + offset) / US)
            answer = guard.admit(["api"])
            assert not answer.degraded, "the test Redis did not answer"
            answers.append((int(clock.now_s() * US), answer))
    finally:
        shared_client.delete(*keys.resource("api"))

    runs = [at for at, answer in answers if answer.admitted]
    for i, first in enumerate(runs):
        for j in range(i, len(runs)):
            assert j - i + 1 <= (runs[j] - first + ttl_us) // t + burst + 1, (i, j, runs)
    for at, answer in answers:
        if answer.leased:
            assert 0 <= at - answer.at_us < ttl_us + 1, (at, answer.at_us)
    previous: int | None = None
    for at, answer in answers:
        if previous is None or at - previous >= (burst + 1) * t:
            assert answer.admitted, (at, previous)
        previous = at
