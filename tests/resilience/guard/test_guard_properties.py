"""Properties of the guard scripts on a real Redis, time injected: the GCRA limiter admits
exactly what a reference model admits, never more than its bound and never refuses a request
it has room for; the breaker keeps its invariants under any sequence of operations."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.guard.admission import Admission, Guard, Outcome
from resilience.guard.resources import BreakerConfig, RateLimitConfig, ResourceConfig
from resilience.storage.clock import ManualClock
from resilience.storage.connection import connect
from resilience.storage.keys import KeySpace
from tests.namespaces import fresh_namespace

US = 1_000_000
START_S = 1_767_225_600.0
MIN_RETRY_US = 1000  # guard_admit.lua never asks for a retry sooner than 1 ms
STATES = {"closed", "open", "half_open", "forced_open", "disabled"}
RECORD_TRANSITIONS = {"closed>open", "half_open>open", "half_open>closed"}


@pytest.fixture(scope="module")
def shared_client(redis_url: str) -> Iterator[redis.Redis]:
    """One client for every example (hypothesis runs many examples per test function), patient
    enough that a busy test Redis is not mistaken for a dead one (a degraded admission)."""
    conn = connect(redis_url, socket_timeout_s=10.0)
    yield conn
    conn.close()


@contextmanager
def fresh_resource(client: redis.Redis) -> Iterator[KeySpace]:
    """A namespace of one example's own; resource ``api``'s keys are deleted afterwards."""
    keys = KeySpace(fresh_namespace("test-prop"))
    try:
        yield keys
    finally:
        client.delete(*keys.resource("api"))


def sent_us(clock: ManualClock) -> int:
    """The microsecond the guard sends as now (what the scripts decide on)."""
    return int(clock.now_s() * US)


# --- GCRA ------------------------------------------------------------------------------------


@dataclass
class GcraModel:
    """guard_lib.lua's GCRA in integer microseconds: (admitted, retry_us, remaining)."""

    interval_us: int
    burst: int
    cost: int = 1
    tat_us: int | None = None

    def admit(self, now: int) -> tuple[bool, int, int]:
        tat = max(self.tat_us if self.tat_us is not None else now, now)
        new_tat = tat + self.interval_us * self.cost
        limit = self.interval_us * (self.burst + 1)
        if new_tat - now > limit:
            remaining = max((limit - (tat - now)) // self.interval_us, 0)
            return False, max(new_tat - now - limit, MIN_RETRY_US), remaining
        self.tat_us = new_tat
        return True, 0, (limit - (new_tat - now)) // self.interval_us


@st.composite
def limiter_runs(draw: st.DrawFn, *, any_cost: bool) -> tuple[RateLimitConfig, list[int]]:
    """A limit (T between 1 s and 20 s, so the rate key's real-time TTL outlives the example)
    and request offsets in µs from the start, non-decreasing."""
    rate = draw(st.integers(1, 10))
    period_s = draw(st.floats(min_value=float(rate), max_value=20.0 * rate))
    burst = draw(st.integers(0, 6))
    cost = draw(st.integers(1, burst + 1)) if any_cost else 1
    limit = RateLimitConfig(rate=rate, period_s=period_s, burst=burst, cost=cost)
    t = limit.interval_us
    gap = st.one_of(
        st.just(0),
        st.integers(0, t // 2),
        st.integers(0, t),
        st.integers(t - 2, t + 2),
        st.integers(0, 3 * (burst + 1) * t),
    )
    offsets, at = [], 0
    for step in draw(st.lists(gap, min_size=1, max_size=40)):
        at += step
        offsets.append(at)
    return limit, offsets


def run_limiter(
    client: redis.Redis, limit: RateLimitConfig, offsets: list[int]
) -> list[tuple[int, Admission]]:
    """Ask the guard once per offset; (the µs it decided on, its answer) each."""
    clock = ManualClock(START_S)
    start_us = sent_us(clock)
    resource = ResourceConfig(name="api", rate_limit=limit)
    answers = []
    with fresh_resource(client) as keys:
        guard = Guard(client, keys, {"api": resource}, server_clock=clock, monotonic=clock.now_s)
        for offset in offsets:
            clock.set((start_us + offset) / US)
            answer = guard.admit(["api"])
            assert not answer.degraded, "the test Redis did not answer"
            answers.append((sent_us(clock), answer))
    return answers


@settings(max_examples=60, deadline=None)
@given(run=limiter_runs(any_cost=False))
def test_gcra_never_exceeds_its_bound_nor_refuses_with_room(
    shared_client: redis.Redis, run: tuple[RateLimitConfig, list[int]]
) -> None:
    """Admitted a_i <= a_j: j - i + 1 <= floor((a_j - a_i) / T) + burst + 1; after an idle
    (burst + 1) T every request is admitted; decisions match the reference model."""
    limit, offsets = run
    t, burst = limit.interval_us, limit.burst
    answers = run_limiter(shared_client, limit, offsets)

    admitted = [at for at, answer in answers if answer.admitted]
    for i, first in enumerate(admitted):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= (admitted[j] - first) // t + burst + 1, (i, j, admitted)

    previous: int | None = None
    for at, answer in answers:
        if previous is None or at - previous >= (burst + 1) * t:
            assert answer.admitted, (at, previous)
        previous = at

    model = GcraModel(t, burst)
    for at, answer in answers:
        assert _decision(answer) == model.admit(at), at


@settings(max_examples=60, deadline=None)
@given(run=limiter_runs(any_cost=True))
def test_gcra_with_cost_matches_the_model(
    shared_client: redis.Redis, run: tuple[RateLimitConfig, list[int]]
) -> None:
    """With any cost the scripts admit, refuse, time retries and count remaining units exactly
    as the reference GCRA does."""
    limit, offsets = run
    model = GcraModel(limit.interval_us, limit.burst, limit.cost)
    for at, answer in run_limiter(shared_client, limit, offsets):
        assert _decision(answer) == model.admit(at), at


def _decision(answer: Admission) -> tuple[bool, int, int]:
    retry_us = 0 if answer.admitted else round(answer.retry_after_s * US)
    return answer.admitted, retry_us, answer.permits[0].remaining


# --- breaker state machine -------------------------------------------------------------------

OUTCOMES = [Outcome.OK, Outcome.FAILED, Outcome.FAILED, Outcome.IGNORED, Outcome.NONE]
durations = st.sampled_from([0.0, 0.0, 3.0])  # 3 s is slow

operations = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.sampled_from(OUTCOMES), durations),  # admit, then record
        st.tuples(st.just("admit")),  # admit, record later (or never: a dead worker)
        st.tuples(st.just("record"), st.sampled_from(OUTCOMES), durations, st.integers(0, 99)),
        st.tuples(st.just("advance"), st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0, 9.0])),
    ),
    min_size=30,
    max_size=80,
)

breakers = st.builds(
    BreakerConfig,
    window_s=st.sampled_from([1, 5]),
    minimum_calls=st.integers(1, 4),
    failure_rate_threshold=st.sampled_from([34.0, 50.0, 100.0]),
    slow_call_rate_threshold=st.sampled_from([0.0, 50.0, 100.0]),
    slow_call_duration_s=st.just(2.0),
    wait_duration_in_open_s=st.just(2.0),
    wait_multiplier=st.sampled_from([1.0, 2.0]),
    max_wait_in_open_s=st.just(8.0),
    wait_jitter=st.sampled_from([0.0, 0.2]),
    permitted_calls_in_half_open=st.integers(1, 3),
    probe_lease_s=st.just(3.0),
)


@dataclass
class Run:
    admission: Admission
    admitted_us: int


@settings(max_examples=60, deadline=None)
@given(config=breakers, ops=operations, seed=st.integers(0, 2**16))
def test_breaker_invariants_hold_for_any_sequence(
    shared_client: redis.Redis, config: BreakerConfig, ops: list[tuple[Any, ...]], seed: int
) -> None:
    """State is one of five; the generation only grows, one event per step; OPEN (before
    open_until) never admits; HALF_OPEN never has more than its permitted probes in flight."""
    client = shared_client
    clock = ManualClock(START_S)
    resource = ResourceConfig(name="api", breaker=config)
    lease_us = int(config.probe_lease_s * US)
    permits = config.permitted_calls_in_half_open
    outstanding: list[Run] = []
    last_gen = 0
    with fresh_resource(client) as keys:
        guard = Guard(
            client,
            keys,
            {"api": resource},
            server_clock=clock,
            monotonic=clock.now_s,
            rng=random.Random(seed),
            open_cache_s=0.0,
        )
        breaker_key, events_key = keys.resource("api")[0], keys.resource("api")[3]
        for op in ops:
            before: dict[str, str] = client.hgetall(breaker_key)  # type: ignore[assignment]
            now = sent_us(clock)
            if op[0] in ("admit", "call"):
                answer = guard.admit(["api"])
                assert not answer.degraded, "the test Redis did not answer"
                state = before.get("state", "closed")
                if state == "open" and now < int(before["open_until"]):
                    assert (answer.admitted, answer.reason) == (False, "breaker open")
                    wait_us = max(int(before["open_until"]) - now, MIN_RETRY_US)
                    assert round(answer.retry_after_s * US) == wait_us
                if answer.admitted:
                    permit = answer.permits[0]
                    assert permit.state in ("closed", "half_open")
                    assert permit.probe == (permit.state == "half_open")
                    outstanding.append(Run(answer, now))
                _check_in_flight(
                    client, keys, outstanding, permits=permits, lease_us=lease_us, now=now
                )
            if op[0] == "call" and answer.admitted:
                outstanding.pop()
                _, outcome, duration_s = op
                result = guard.record(answer, outcome, duration_s=duration_s)
                assert {t for _, t in result.transitions} <= RECORD_TRANSITIONS
            elif op[0] == "record" and outstanding:
                _, outcome, duration_s, index = op
                run = outstanding.pop(index % len(outstanding))
                result = guard.record(run.admission, outcome, duration_s=duration_s)
                assert {t for _, t in result.transitions} <= RECORD_TRANSITIONS
            elif op[0] == "advance":
                clock.advance(op[1])

            after: dict[str, str] = client.hgetall(breaker_key)  # type: ignore[assignment]
            state, gen = after.get("state", "closed"), int(after.get("gen", 0))
            assert state in STATES
            assert gen >= last_gen
            assert client.xlen(events_key) == gen
            last_gen = gen
            _check_in_flight(
                client, keys, outstanding, permits=permits, lease_us=lease_us, now=sent_us(clock)
            )


def _check_in_flight(
    client: redis.Redis,
    keys: KeySpace,
    outstanding: list[Run],
    *,
    permits: int,
    lease_us: int,
    now: int,
) -> None:
    """In HALF_OPEN, at most ``permits`` probes of this generation hold a live lease."""
    fields: dict[str, str] = client.hgetall(keys.resource("api")[0])  # type: ignore[assignment]
    if fields.get("state") != "half_open":
        return
    gen = int(fields["gen"])
    in_flight = [
        r
        for r in outstanding
        if r.admission.permits[0].probe
        and r.admission.permits[0].generation == gen
        and r.admitted_us + lease_us > now
    ]
    assert len(in_flight) <= permits
    assert client.zcard(keys.resource("api")[2]) <= permits
    assert int(fields.get("granted", 0)) <= permits
