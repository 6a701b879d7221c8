"""Tests of ``resilience.guard.admission``: the fleet-wide breaker, GCRA rate limiter, concurrency
limit and retry budget, decided by the guard scripts on a real Redis with time injected."""

from __future__ import annotations

import math
import random
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pytest
import redis

from resilience.errors import ConfigurationError
from resilience.guard.admission import Admission, Guard, Outcome, RecordResult
from resilience.guard.resource_tables import resources_from_mapping
from resilience.guard.resources import (
    BreakerConfig,
    ConcurrencyConfig,
    RateLimitConfig,
    ResourceConfig,
    RetryBudgetConfig,
)
from resilience.storage.clock import ManualClock
from resilience.storage.connection import connect
from resilience.storage.direct_script import DirectScript
from resilience.storage.keys import KeySpace
from resilience.storage.scripts import lua_source
from tests.builders import breaker, guarded

US = 1_000_000
BREAKER, WINDOW, PROBES, EVENTS, RATE, LEASES, BUDGET = range(7)
T = TypeVar("T")


# --- helpers ---------------------------------------------------------------------------------


def make_guard(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, *resources: ResourceConfig, **opts: Any
) -> Guard:
    """A Guard whose server time and monotonic time are both ``clock``."""
    return Guard(
        client,
        keys,
        {r.name: r for r in resources},
        server_clock=clock,
        monotonic=clock.now_s,
        **opts,
    )


def now_us(clock: ManualClock) -> int:
    """The microsecond the guard sends as the scripts' now."""
    return int(clock.now_s() * US)


def breaker_hash(client: redis.Redis, keys: KeySpace, name: str = "api") -> dict[str, str]:
    """The breaker's stored fields (empty: never transitioned, i.e. CLOSED generation 0)."""
    return client.hgetall(keys.resource(name)[BREAKER])  # type: ignore[return-value]


def state_of(client: redis.Redis, keys: KeySpace, name: str = "api") -> str:
    """The breaker's state as stored."""
    return breaker_hash(client, keys, name).get("state", "closed")


def events_of(client: redis.Redis, keys: KeySpace, name: str = "api") -> list[tuple[str, str]]:
    """(from, to) of every transition event in the resource's stream, oldest first."""
    entries = client.xrange(keys.resource(name)[EVENTS])
    return [(fields["from"], fields["to"]) for _, fields in entries]  # type: ignore[index]


def call(
    guard: Guard, outcome: Outcome, name: str = "api", duration_s: float = 0.0
) -> RecordResult:
    """One admitted run of ``name`` recorded with ``outcome``."""
    admission = guard.admit([name])
    assert admission.admitted, admission
    return guard.record(admission, outcome, duration_s=duration_s)


def calls(guard: Guard, outcomes: Sequence[Outcome], name: str = "api") -> list[RecordResult]:
    """One admitted run per outcome, in order."""
    return [call(guard, outcome, name) for outcome in outcomes]


def transitions(results: Sequence[RecordResult]) -> list[tuple[str, str]]:
    """Every transition the records reported, in order."""
    return [t for result in results for t in result.transitions]


def trip(guard: Guard, name: str = "api", failures: int = 4) -> None:
    """Open the breaker of ``name`` with ``failures`` failed calls."""
    assert transitions(calls(guard, [Outcome.FAILED] * failures, name)) == [(name, "closed>open")]


def race(count: int, action: Callable[[int], T]) -> list[T]:
    """Run ``action(i)`` on ``count`` threads released at once; their results by index."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = action(index)
        except BaseException as error:  # reported below, with the others
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    return results


@pytest.fixture
def clock() -> ManualClock:
    """Injected time, starting on a whole second (the breaker's buckets are per second)."""
    return ManualClock(1_767_225_600.0)


@pytest.fixture
def fleet(redis_url: str) -> Iterator[Callable[[int], list[redis.Redis]]]:
    """Opens clients of their own for simulated workers; all closed afterwards."""
    opened: list[redis.Redis] = []

    def open_clients(count: int) -> list[redis.Redis]:
        new = [connect(redis_url, socket_timeout_s=10.0) for _ in range(count)]
        opened.extend(new)
        return new

    yield open_clients
    for conn in opened:
        conn.close()


# --- breaker: tripping -----------------------------------------------------------------------


def test_closed_stays_closed_below_minimum_calls_at_all_failures(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Below ``minimum_calls`` even 100% failures leave it CLOSED; the call reaching it trips."""
    guard = make_guard(client, keys, clock, guarded(breaker=breaker(minimum_calls=5)))
    assert transitions(calls(guard, [Outcome.FAILED] * 4)) == []
    assert state_of(client, keys) == "closed"
    assert guard.admit(["api"]).admitted
    assert call(guard, Outcome.FAILED).transitions == (("api", "closed>open"),)
    assert state_of(client, keys) == "open"
    assert events_of(client, keys) == [("closed", "open")]


@pytest.mark.parametrize(
    ("failures", "expected"), [(499, "closed"), (500, "open")], ids=["49.9%", "50%"]
)
def test_failure_rate_threshold_boundary(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, failures: int, expected: str
) -> None:
    """Of 1000 calls 499 failures (49.9%) keep a 50% breaker CLOSED; 500 (50%) open it."""
    config = breaker(minimum_calls=1000, failure_rate_threshold=50.0)
    guard = make_guard(client, keys, clock, guarded(breaker=config))
    results = calls(guard, [Outcome.OK] * (1000 - failures) + [Outcome.FAILED] * failures)
    assert transitions(results) == ([] if expected == "closed" else [("api", "closed>open")])
    assert state_of(client, keys) == expected


@pytest.mark.parametrize(
    ("durations_s", "expected"),
    [
        ((1.999999, 1.999999, 1.999999, 2.0), "closed"),  # 25% slow
        ((1.999999, 1.999999, 2.0, 2.0), "open"),  # 50% slow: 2.0 s counts as slow
    ],
)
def test_slow_call_rate_trips(
    client: redis.Redis,
    keys: KeySpace,
    clock: ManualClock,
    durations_s: tuple[float, ...],
    expected: str,
) -> None:
    """Successful calls at or over ``slow_call_duration_s`` trip it at the slow-call rate."""
    config = breaker(slow_call_rate_threshold=50.0, slow_call_duration_s=2.0)
    guard = make_guard(client, keys, clock, guarded(breaker=config))
    for duration_s in durations_s:
        call(guard, Outcome.OK, duration_s=duration_s)
    assert state_of(client, keys) == expected
    if expected == "open":
        (_, event), *_ = client.xrange(keys.resource("api")[EVENTS])
        assert event["reason"] == "slow call rate"  # type: ignore[index]
        assert float(event["rate"]) == 50.0  # type: ignore[index]


def test_ignored_outcomes_are_not_counted(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """IGNORED results add no call: 10 ignored + 1 failed + 1 ok is 50% over 2 calls."""
    guard = make_guard(client, keys, clock, guarded(breaker=breaker(minimum_calls=2)))
    calls(guard, [Outcome.IGNORED] * 10)
    assert client.hget(keys.resource("api")[WINDOW], "calls") is None
    assert call(guard, Outcome.FAILED).transitions == ()
    assert client.hget(keys.resource("api")[WINDOW], "calls") == "1"
    assert call(guard, Outcome.OK).transitions == (("api", "closed>open"),)


@pytest.mark.parametrize(
    "case",
    [
        (0.0, 9.75, "open"),  # 9.75 s apart but in seconds 0 and 9: one 10 s window
        (0.75, 10.0, "closed"),  # only 9.25 s apart, but second 0 has left the window
    ],
    ids=["second-0-and-9", "second-0-and-10"],
)
def test_window_forgets_per_second_buckets_older_than_window(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, case: tuple[float, float, str]
) -> None:
    """Failures count for the ``window_s`` whole seconds from their own second, no longer."""
    first_at_s, last_at_s, expected = case
    guard = make_guard(client, keys, clock, guarded(breaker=breaker(window_s=10)))
    start = clock.now_s()
    clock.set(start + first_at_s)
    calls(guard, [Outcome.FAILED] * 3)
    clock.set(start + last_at_s)
    call(guard, Outcome.FAILED)
    assert state_of(client, keys) == expected


def test_window_slides_second_by_second(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A 3 s window drops only the seconds that left it, keeping the running totals right."""
    config = breaker(window_s=3, minimum_calls=3, failure_rate_threshold=100.0)
    guard = make_guard(client, keys, clock, guarded(breaker=config))
    window = keys.resource("api")[WINDOW]
    call(guard, Outcome.FAILED)  # second 0
    clock.advance(1)
    call(guard, Outcome.FAILED)  # second 1
    clock.advance(2)
    call(guard, Outcome.FAILED)  # second 3: second 0 is gone
    assert (client.hget(window, "calls"), client.hget(window, "fails")) == ("2", "2")
    assert state_of(client, keys) == "closed"
    assert call(guard, Outcome.FAILED).transitions == (("api", "closed>open"),)


# --- breaker: OPEN ---------------------------------------------------------------------------


def test_open_refuses_with_exact_retry_after(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """OPEN refuses with retry_after == open_until - now, to the microsecond."""
    guard = make_guard(client, keys, clock, guarded(breaker=breaker()), open_cache_s=0.0)
    trip(guard)
    opened_us = now_us(clock)
    assert int(breaker_hash(client, keys)["open_until"]) == opened_us + 30 * US
    for elapsed_s in (0.0, 7.25, 29.999):
        clock.set(opened_us / US + elapsed_s)
        refused = guard.admit(["api"])
        assert (refused.admitted, refused.refused_by, refused.reason) == (
            False,
            "api",
            "breaker open",
        )
        assert refused.retry_after_s == (opened_us + 30 * US - now_us(clock)) / US
    assert state_of(client, keys) == "open"


def _open_wait_us(client: redis.Redis, keys: KeySpace, clock: ManualClock) -> int:
    """How long the breaker, just opened, stays OPEN."""
    fields = breaker_hash(client, keys)
    assert fields["state"] == "open"
    return int(fields["open_until"]) - now_us(clock)


def _probe_fails(guard: Guard, client: redis.Redis, keys: KeySpace, clock: ManualClock) -> int:
    """Wait out OPEN, fail the one probe; the new OPEN wait (µs)."""
    clock.set(int(breaker_hash(client, keys)["open_until"]) / US)
    probe = guard.admit(["api"])
    assert probe.admitted and probe.permits[0].probe
    assert guard.record(probe, Outcome.FAILED).transitions == (("api", "half_open>open"),)
    return _open_wait_us(client, keys, clock)


def test_open_wait_grows_by_multiplier_capped_and_resets_on_close(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Consecutive openings wait 1x, 2x, 4x (capped at max_wait); a close starts over at 1x."""
    config = breaker(
        wait_duration_in_open_s=10.0,
        wait_multiplier=2.0,
        max_wait_in_open_s=35.0,
        permitted_calls_in_half_open=1,
    )
    guard = make_guard(client, keys, clock, guarded(breaker=config), open_cache_s=0.0)
    trip(guard)
    waits = [_open_wait_us(client, keys, clock)]
    waits += [_probe_fails(guard, client, keys, clock) for _ in range(3)]
    assert waits == [10 * US, 20 * US, 35 * US, 35 * US]

    clock.set(int(breaker_hash(client, keys)["open_until"]) / US)
    probe = guard.admit(["api"])
    assert guard.record(probe, Outcome.OK).transitions == (("api", "half_open>closed"),)
    trip(guard)
    assert _open_wait_us(client, keys, clock) == 10 * US


def test_open_wait_jitter_stays_within_bounds(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """With wait_jitter j the wait is floor(w(1 + u j)), u the seeded rng's draw in [-1, 1]."""
    config = breaker(minimum_calls=1, wait_duration_in_open_s=10.0, wait_jitter=0.5)
    waits = []
    for seed in range(20):
        name = f"api{seed}"
        guard = make_guard(
            client, keys, clock, guarded(name, breaker=config), rng=random.Random(seed)
        )
        assert call(guard, Outcome.FAILED, name).transitions == ((name, "closed>open"),)
        wait_us = int(breaker_hash(client, keys, name)["open_until"]) - now_us(clock)
        spread = random.Random(seed).uniform(-1.0, 1.0)  # the record's one draw
        assert wait_us == math.floor(10 * US * (1 + spread * 0.5))
        assert 5 * US <= wait_us <= 15 * US
        waits.append(wait_us)
    assert min(waits) < 8 * US and max(waits) > 12 * US  # it really spreads


# --- breaker: HALF_OPEN ----------------------------------------------------------------------


def test_half_open_admits_exactly_permitted_probes_to_racing_workers(
    client: redis.Redis,
    keys: KeySpace,
    clock: ManualClock,
    fleet: Callable[[int], list[redis.Redis]],
) -> None:
    """20 workers racing admit() after OPEN: one moves it to HALF_OPEN, exactly 3 probes run."""
    resource = guarded(breaker=breaker(permitted_calls_in_half_open=3))
    trip(make_guard(client, keys, clock, resource))
    clock.advance(30)
    workers = [make_guard(c, keys, clock, resource) for c in fleet(20)]
    answers = race(20, lambda i: workers[i].admit(["api"]))

    admitted = [a for a in answers if a.admitted]
    assert len(admitted) == 3
    assert all(a.permits[0].probe and a.permits[0].state == "half_open" for a in admitted)
    refused = [a for a in answers if not a.admitted]
    assert {(a.reason, a.retry_after_s) for a in refused} == {
        ("breaker half-open: probes in flight", 1.0)
    }
    assert events_of(client, keys) == [("closed", "open"), ("open", "half_open")]
    assert client.zcard(keys.resource("api")[PROBES]) == 3


def _half_open(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, **config: Any
) -> tuple[Guard, list[Admission]]:
    """A breaker in HALF_OPEN with all its probes admitted."""
    guard = make_guard(client, keys, clock, guarded(breaker=breaker(**config)), open_cache_s=0.0)
    trip(guard)
    clock.advance(30)
    permits = breaker(**config).permitted_calls_in_half_open
    probes = [guard.admit(["api"]) for _ in range(permits)]
    assert all(p.admitted and p.permits[0].probe for p in probes)
    assert not guard.admit(["api"]).admitted
    return guard, probes


def test_probes_all_ok_close_the_breaker(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Every probe OK: the last result closes it, with a fresh window and a new generation."""
    guard, probes = _half_open(client, keys, clock)
    half_open_gen = probes[0].permits[0].generation
    results = [guard.record(p, Outcome.OK).transitions for p in probes]
    assert results == [(), (), (("api", "half_open>closed"),)]
    fields = breaker_hash(client, keys)
    assert (fields["state"], int(fields["gen"]), fields["opens"]) == (
        "closed",
        half_open_gen + 1,
        "0",
    )
    assert guard.admit(["api"]).permits[0].probe is False


def test_probe_failures_reaching_threshold_open_it_again(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """2 failed probes of 3 (66% >= 50%) reopen it in a new generation once every permitted
    probe has answered (so each half-open period lets exactly 3 calls through); a stale
    result afterwards changes nothing."""
    guard, probes = _half_open(client, keys, clock)
    half_open_gen = probes[0].permits[0].generation
    assert guard.record(probes[0], Outcome.FAILED).transitions == ()
    assert guard.record(probes[1], Outcome.FAILED).transitions == ()
    assert breaker_hash(client, keys)["state"] == "half_open"
    assert guard.record(probes[2], Outcome.OK).transitions == (("api", "half_open>open"),)
    fields = breaker_hash(client, keys)
    assert (fields["state"], int(fields["gen"])) == ("open", half_open_gen + 1)
    assert int(fields["open_until"]) == now_us(clock) + 30 * US
    assert guard.record(probes[2], Outcome.FAILED).transitions == ()
    assert breaker_hash(client, keys) == fields
    assert guard.admit(["api"]).reason == "breaker open"


def test_ignored_probe_frees_its_slot(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A probe recorded IGNORED says nothing of health: another probe takes its slot."""
    guard, probes = _half_open(client, keys, clock, permitted_calls_in_half_open=2)
    assert guard.record(probes[0], Outcome.IGNORED).transitions == ()
    replacement = guard.admit(["api"])
    assert replacement.admitted and replacement.permits[0].probe
    assert not guard.admit(["api"]).admitted
    assert guard.record(probes[1], Outcome.OK).transitions == ()
    assert guard.record(replacement, Outcome.OK).transitions == (("api", "half_open>closed"),)


def test_expired_probe_lease_is_reclaimed_and_its_late_result_ignored(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A probe never recorded frees its slot after probe_lease_s; its late FAILED is ignored."""
    guard, (dead,) = _half_open(
        client, keys, clock, permitted_calls_in_half_open=1, probe_lease_s=5.0
    )
    clock.advance(4.75)
    busy = guard.admit(["api"])
    assert (busy.admitted, busy.retry_after_s) == (False, 0.25)  # until the lease expires
    clock.advance(0.25)
    successor = guard.admit(["api"])
    assert successor.admitted and successor.permits[0].probe
    before = breaker_hash(client, keys)
    assert guard.record(dead, Outcome.FAILED).transitions == ()
    assert breaker_hash(client, keys) == before
    assert guard.record(successor, Outcome.OK).transitions == (("api", "half_open>closed"),)


# --- breaker: generations and races ----------------------------------------------------------


def test_result_from_an_earlier_generation_is_not_counted(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A failure admitted before open>half_open>closed does not count in the new window."""
    config = breaker(minimum_calls=1, permitted_calls_in_half_open=1)
    guard = make_guard(client, keys, clock, guarded(breaker=config))
    stale = guard.admit(["api"])
    assert stale.permits[0].generation == 0
    trip(guard, failures=1)
    clock.advance(30)
    probe = guard.admit(["api"])
    assert guard.record(probe, Outcome.OK).transitions == (("api", "half_open>closed"),)
    assert breaker_hash(client, keys)["gen"] == "3"

    assert guard.record(stale, Outcome.FAILED).transitions == ()
    assert state_of(client, keys) == "closed"
    assert not client.exists(keys.resource("api")[WINDOW])
    # The same failure in the current generation would have tripped it.
    assert call(guard, Outcome.FAILED).transitions == (("api", "closed>open"),)


def test_stale_probe_result_is_not_counted_when_its_ticket_probes_again(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A probe's late result does not count in a later HALF_OPEN, even when the same ticket
    (a task's id and delivery) holds a probe lease there again."""
    config = breaker(minimum_calls=1, permitted_calls_in_half_open=1, probe_lease_s=5.0)
    guard = make_guard(client, keys, clock, guarded(breaker=config), open_cache_s=0.0)
    trip(guard, failures=1)
    clock.advance(30)
    stale = guard.admit(["api"], ticket="task-1:0")
    clock.advance(5)  # its lease expires; another probe fails: OPEN again
    failing = guard.admit(["api"])
    assert guard.record(failing, Outcome.FAILED).transitions == (("api", "half_open>open"),)
    clock.advance(30)
    again = guard.admit(["api"], ticket="task-1:0")
    assert again.permits[0].probe
    assert again.permits[0].generation == stale.permits[0].generation + 2

    assert guard.record(stale, Outcome.FAILED).transitions == ()
    assert state_of(client, keys) == "half_open"
    assert guard.record(again, Outcome.OK).transitions == (("api", "half_open>closed"),)


def test_concurrent_failures_across_threshold_open_it_exactly_once(
    client: redis.Redis,
    keys: KeySpace,
    clock: ManualClock,
    fleet: Callable[[int], list[redis.Redis]],
) -> None:
    """16 workers recording failures at once past minimum_calls=10: one transition, one event."""
    resource = guarded(breaker=breaker(minimum_calls=10))
    workers = [make_guard(c, keys, clock, resource) for c in fleet(16)]
    admissions = [w.admit(["api"]) for w in workers]
    assert all(a.admitted for a in admissions)
    results = race(16, lambda i: workers[i].record(admissions[i], Outcome.FAILED))
    assert transitions(results) == [("api", "closed>open")]
    assert client.xlen(keys.resource("api")[EVENTS]) == 1
    assert events_of(client, keys) == [("closed", "open")]
    assert breaker_hash(client, keys)["gen"] == "1"


# --- breaker: clocks and the local cache -----------------------------------------------------


def _skew_scenario(guard: Guard) -> list[tuple[Any, ...]]:
    """A fixed sequence on one resource: two admitted, a rate refusal, a trip, a breaker refusal;
    each decision as (admitted, refused_by, reason, retry_after rounded to 1 s, transitions)."""
    decisions: list[tuple[Any, ...]] = []
    admissions = []
    for _ in range(3):
        answer = guard.admit(["api"])
        decisions.append(
            (answer.admitted, answer.refused_by, answer.reason, round(answer.retry_after_s))
        )
        if answer.admitted:
            admissions.append(answer)
    for admission in admissions:
        decisions.append(("record", guard.record(admission, Outcome.FAILED).transitions))
    answer = guard.admit(["api"])
    decisions.append(
        (answer.admitted, answer.refused_by, answer.reason, round(answer.retry_after_s))
    )
    return decisions


SKEW_EXPECTED = [
    (True, None, "", 0),
    (True, None, "", 0),
    (False, "api", "rate limited", 30),  # a client clock 60 s ahead would admit this
    ("record", ()),
    ("record", (("api", "closed>open"),)),
    (False, "api", "breaker open", 30),  # ... and find this breaker past its wait
]


def test_local_clock_skew_changes_no_decision(client: redis.Redis, keys: KeySpace) -> None:
    """Guards whose local clocks are 60 s apart, on Redis TIME, decide the same sequence alike
    and, sharing a namespace, honour each other's refusals."""
    resource = guarded(
        breaker=breaker(minimum_calls=2, wait_duration_in_open_s=30.0),
        rate_limit=RateLimitConfig(rate=1, period_s=30.0, burst=1),
    )
    local_a = ManualClock(1_767_225_600.0)
    local_b = ManualClock(1_767_225_660.0)

    def on_redis_time(space: KeySpace, local: ManualClock) -> Guard:
        return Guard(client, space, {"api": resource}, monotonic=local.now_s)

    a = on_redis_time(KeySpace(f"{keys.namespace}:a"), local_a)
    b = on_redis_time(KeySpace(f"{keys.namespace}:b"), local_b)
    assert _skew_scenario(a) == SKEW_EXPECTED
    assert _skew_scenario(b) == SKEW_EXPECTED

    shared_a, shared_b = on_redis_time(keys, local_a), on_redis_time(keys, local_b)
    first, second = shared_a.admit(["api"]), shared_b.admit(["api"])
    assert first.admitted and second.admitted
    refused = shared_b.admit(["api"])
    assert (refused.reason, round(refused.retry_after_s)) == ("rate limited", 30)
    shared_a.record(first, Outcome.FAILED)
    assert shared_b.record(second, Outcome.FAILED).transitions == (("api", "closed>open"),)
    refused = shared_a.admit(["api"])
    assert (refused.reason, round(refused.retry_after_s)) == ("breaker open", 30)


def test_open_breaker_is_cached_locally_for_open_cache_s(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a "breaker open" refusal, admits within open_cache_s refuse without Redis; then
    Redis is asked again."""
    guard = make_guard(client, keys, clock, guarded(breaker=breaker()), open_cache_s=1.0)
    trip(guard)
    assert guard.admit(["api"]).retry_after_s == 30.0
    asked: list[bytes] = []
    round_trip = DirectScript._round_trip

    def counting(connection: Any, packed: list[bytes]) -> Any:
        asked.append(b"".join(packed).split(b"\r\n")[2])  # the command's name
        return round_trip(connection, packed)

    monkeypatch.setattr(DirectScript, "_round_trip", staticmethod(counting))
    clock.advance(0.5)
    cached = guard.admit(["api"])
    assert (cached.admitted, cached.refused_by, cached.reason, cached.degraded) == (
        False,
        "api",
        "breaker open",
        False,
    )
    assert 0 < cached.retry_after_s <= 29.5
    assert asked == []

    clock.advance(0.5)
    asked_again = guard.admit(["api"])
    assert asked == [b"EVALSHA"]
    assert (asked_again.reason, asked_again.retry_after_s) == ("breaker open", 29.0)


def test_cached_open_refusal_keeps_the_breakers_retry_after(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A refusal from the OPEN cache reports the breaker's remaining wait, not the cache's."""
    guard = make_guard(client, keys, clock, guarded(breaker=breaker()), open_cache_s=1.0)
    trip(guard)
    assert guard.admit(["api"]).retry_after_s == 30.0
    clock.advance(0.5)
    assert guard.admit(["api"]).retry_after_s == 29.5


# --- rate limiter (GCRA) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [(10, 1.0, 4, 100_000), (3, 1.0, 2, 333_333), (180, 60.0, 10, 333_333), (1, 7.0, 0, 7 * US)],
    ids=["10/s+4", "3/s+2", "180/min+10", "1/7s+0"],
)
def test_gcra_admits_burst_plus_one_at_an_instant(
    client: redis.Redis, keys: KeySpace, clock: ManualClock, case: tuple[int, float, int, int]
) -> None:
    """At one instant burst + 1 are admitted, remaining counting down; the next waits T."""
    rate, period_s, burst, interval_us = case
    limit = RateLimitConfig(rate=rate, period_s=period_s, burst=burst)
    assert limit.interval_us == interval_us
    guard = make_guard(client, keys, clock, guarded(rate_limit=limit))
    answers = [guard.admit(["api"]) for _ in range(burst + 2)]
    assert [a.admitted for a in answers] == [True] * (burst + 1) + [False]
    assert [a.permits[0].remaining for a in answers] == [*range(burst, -1, -1), 0]
    assert (answers[-1].reason, answers[-1].retry_after_s) == ("rate limited", interval_us / US)

    clock.set((now_us(clock) + interval_us) / US)
    assert guard.admit(["api"]).admitted
    assert guard.admit(["api"]).retry_after_s == interval_us / US


@pytest.mark.parametrize("tat_ahead_us", [1, 999, 1_000, 20_833, 120_000, 2_000_500])
def test_gcra_state_outlives_its_tat_by_a_millisecond(
    client: redis.Redis, tat_ahead_us: int
) -> None:
    """The TAT key is kept at least 1 ms past the TAT: Redis expires keys by a millisecond
    clock read at the script's start, up to 1 ms behind TIME, and a TAT forgotten early lets
    the next admission start from "now" (seen as 56 admitted in a 1 s window of a 50/s + 5
    limit, whose bound is 55)."""
    keep = client.register_script(
        lua_source("resilience.guard", "guard_lib")
        + "\nreturn gcra_keep_ms(tonumber(ARGV[1]), tonumber(ARGV[2]))"
    )
    now = 1_795_900_000_123_456
    keep_ms = int(str(keep(args=[now + tat_ahead_us, now])))
    assert keep_ms * 1000 >= tat_ahead_us + 1000


def test_gcra_cost_takes_that_many_units(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """cost 3 of burst 5 (6 units): two runs fit at once; the third waits 3 T."""
    limit = RateLimitConfig(rate=10, period_s=1.0, burst=5, cost=3)
    guard = make_guard(client, keys, clock, guarded(rate_limit=limit))
    answers = [guard.admit(["api"]) for _ in range(3)]
    assert [(a.admitted, a.permits[0].remaining) for a in answers] == [
        (True, 3),
        (True, 0),
        (False, 0),
    ]
    assert answers[2].retry_after_s == 0.3


def test_push_holds_every_guard_back_until_then(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """push(name, 5) from one worker refuses every worker before now + 5 s, admits at it."""
    resource = guarded(rate_limit=RateLimitConfig(rate=10, period_s=1.0, burst=2))
    pusher, other = (make_guard(client, keys, clock, resource) for _ in range(2))
    pusher.push("api", 5.0)
    clock.advance(4.75)
    held = other.admit(["api"])
    assert (held.admitted, held.reason, held.retry_after_s) == (False, "rate limited", 0.25)
    clock.advance(0.25)
    assert other.admit(["api"]).admitted
    pusher.push("unknown", 5.0)  # not configured: nothing to push


# --- concurrency limit -----------------------------------------------------------------------


def test_concurrency_limit_refuses_beyond_limit_until_released(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Limit 3: three run, the fourth is refused for <= 0.25 s; a record() frees a lease."""
    guard = make_guard(client, keys, clock, guarded(concurrency=ConcurrencyConfig(limit=3)))
    running = [guard.admit(["api"]) for _ in range(3)]
    assert all(a.admitted for a in running)
    refused = guard.admit(["api"])
    assert (refused.admitted, refused.reason, refused.retry_after_s) == (
        False,
        "concurrency limit",
        0.25,
    )
    guard.record(running[0], Outcome.OK)
    assert guard.admit(["api"]).admitted
    assert not guard.admit(["api"]).admitted


def test_unreleased_lease_is_reclaimed_after_lease_s(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A lease never returned (its worker died) holds its slot for exactly lease_s."""
    concurrency = ConcurrencyConfig(limit=1, lease_s=60.0)
    guard = make_guard(client, keys, clock, guarded(concurrency=concurrency))
    assert guard.admit(["api"]).admitted
    clock.advance(59.9)
    almost = guard.admit(["api"])
    assert (almost.admitted, almost.retry_after_s) == (False, pytest.approx(0.1, abs=1e-6))
    clock.advance(0.1)
    assert guard.admit(["api"]).admitted


def test_admission_is_all_or_nothing_across_resources(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Refused by one resource, an admission takes no lease, rate unit or probe elsewhere."""
    leased = guarded("leased", concurrency=ConcurrencyConfig(limit=5))
    probed = guarded("probed", breaker=breaker(permitted_calls_in_half_open=1))
    limited = guarded("limited", rate_limit=RateLimitConfig(rate=1, period_s=60.0))
    guard = make_guard(client, keys, clock, leased, probed, limited, open_cache_s=0.0)
    trip(guard, "probed")
    clock.advance(30)
    assert guard.admit(["limited"]).admitted  # spends the only unit
    refused = guard.admit(["leased", "probed", "limited"])
    assert (refused.admitted, refused.refused_by, refused.reason) == (
        False,
        "limited",
        "rate limited",
    )
    assert client.zcard(keys.resource("leased")[LEASES]) == 0
    assert client.zcard(keys.resource("probed")[PROBES]) == 0
    probe = guard.admit(["probed", "leased"])
    assert probe.admitted and probe.permits[0].probe


# --- retry budget ----------------------------------------------------------------------------


def _retry(guard: Guard, names: Sequence[str], kind: str = "retry") -> bool:
    """A failed run asking the budget to pay for its retry; whether it was paid."""
    admission = guard.admit(names)
    return guard.record(admission, Outcome.FAILED, retry=kind).retry_allowed  # type: ignore[arg-type]


def _tokens(client: redis.Redis, keys: KeySpace, name: str) -> float:
    """The tokens stored at the budget's last write."""
    return float(client.hget(keys.resource(name)[BUDGET], "tokens"))  # type: ignore[arg-type]


def budget(**overrides: Any) -> RetryBudgetConfig:
    """A budget of 10 tokens: retry 3, timeout 4, no refill unless asked."""
    settings: dict[str, Any] = {
        "capacity": 10.0,
        "retry_cost": 3.0,
        "timeout_cost": 4.0,
        "success_refill": 0.0,
        "refill_per_s": 0.0,
    }
    settings.update(overrides)
    return RetryBudgetConfig(**settings)


def test_retry_budget_allows_floor_capacity_over_cost(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Capacity 10, cost 3: three retries are paid, the fourth is refused and spends nothing."""
    guard = make_guard(client, keys, clock, guarded(retry_budget=budget()))
    assert [_retry(guard, ["api"]) for _ in range(5)] == [True, True, True, False, False]
    assert _tokens(client, keys, "api") == 1.0
    admission = guard.admit(["api"])
    assert guard.record(admission, Outcome.FAILED).retry_allowed  # no retry asked


def test_retry_budget_is_all_or_nothing_across_resources(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A retry one budget cannot pay spends no other budget."""
    big = guarded("big", retry_budget=budget(capacity=10.0))
    small = guarded("small", retry_budget=budget(capacity=6.0))
    guard = make_guard(client, keys, clock, big, small)
    assert [_retry(guard, ["big", "small"]) for _ in range(3)] == [True, True, False]
    assert (_tokens(client, keys, "big"), _tokens(client, keys, "small")) == (4.0, 0.0)
    assert [_retry(guard, ["big"]) for _ in range(2)] == [True, False]


def test_retry_budget_refills_on_success_and_with_time(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Each success returns success_refill; time returns refill_per_s, capped at capacity."""
    config = budget(capacity=10.0, retry_cost=5.0, success_refill=2.0, refill_per_s=0.5)
    guard = make_guard(client, keys, clock, guarded(retry_budget=config))
    assert [_retry(guard, ["api"]) for _ in range(3)] == [True, True, False]
    calls(guard, [Outcome.OK] * 2)
    assert _tokens(client, keys, "api") == 4.0
    assert not _retry(guard, ["api"])
    clock.advance(1.5)  # 4 + 0.75
    assert not _retry(guard, ["api"])
    clock.advance(0.5)  # 4 + 1.0
    assert _retry(guard, ["api"])
    assert _tokens(client, keys, "api") == 0.0
    clock.advance(9.5)  # 4.75
    assert not _retry(guard, ["api"])
    clock.advance(0.5)  # 5.0
    assert _retry(guard, ["api"])
    clock.advance(1000)  # full again, not beyond
    assert [_retry(guard, ["api"]) for _ in range(3)] == [True, True, False]


def test_timeout_retries_cost_timeout_cost(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Capacity 10: timeouts cost 4 (two paid), then plain retries cost 3 (none left)."""
    guard = make_guard(client, keys, clock, guarded(retry_budget=budget(retry_cost=1.0)))
    assert [_retry(guard, ["api"], "timeout") for _ in range(3)] == [True, True, False]
    assert _tokens(client, keys, "api") == 2.0
    assert [_retry(guard, ["api"]) for _ in range(3)] == [True, True, False]


# --- fail modes and unknown resources --------------------------------------------------------


@pytest.fixture
def dead_redis() -> Iterator[redis.Redis]:
    """A client of a port nothing listens on."""
    conn = connect("redis://127.0.0.1:1/0", socket_timeout_s=0.2, connect_timeout_s=0.2, retries=0)
    yield conn
    conn.close()


def test_unreachable_redis_follows_each_resources_fail_mode(
    dead_redis: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Without Redis, fail-open resources are admitted (degraded); any fail-closed one refuses
    with its fail_closed_retry_s; every decision is counted."""
    lenient = guarded("lenient", breaker=breaker(), fail_mode="open")
    strict = guarded("strict", concurrency=ConcurrencyConfig(limit=1), fail_mode="closed")
    stricter = guarded(
        "stricter", rate_limit=RateLimitConfig(rate=1), fail_mode="closed", fail_closed_retry_s=12.0
    )
    guard = make_guard(dead_redis, keys, clock, lenient, strict, stricter)

    admitted = guard.admit(["lenient"])
    assert (admitted.admitted, admitted.degraded, admitted.permits) == (True, True, ())
    refused = guard.admit(["lenient", "strict"])
    assert (refused.admitted, refused.degraded, refused.refused_by, refused.retry_after_s) == (
        False,
        True,
        "strict",
        5.0,
    )
    assert guard.admit(["strict", "stricter"]).retry_after_s == 12.0
    assert guard.degraded_decisions == {
        "lenient:admitted": 1,
        "lenient:refused": 1,
        "strict:refused": 2,
        "stricter:refused": 1,
    }
    assert guard.record(admitted, Outcome.FAILED, retry="retry") == RecordResult(True)


def test_record_without_redis_allows_the_retry(
    client: redis.Redis, dead_redis: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A run admitted while Redis answered, recorded after it died: no raise, retry allowed."""
    resource = guarded(retry_budget=budget(capacity=3.0, retry_cost=3.0, timeout_cost=3.0))
    admission = make_guard(client, keys, clock, resource).admit(["api"])
    assert admission.admitted and not admission.degraded
    cut_off = make_guard(dead_redis, keys, clock, resource)
    assert cut_off.record(admission, Outcome.FAILED, retry="retry") == RecordResult(True)


def test_unknown_resources_are_not_guarded(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """Names without configuration are admitted and given no permit."""
    resource = guarded(rate_limit=RateLimitConfig(rate=1, period_s=60.0))
    guard = make_guard(client, keys, clock, resource)
    alone = guard.admit(["nope", "nope.either"])
    assert (alone.admitted, alone.permits) == (True, ())
    assert guard.record(alone, Outcome.FAILED, retry="retry") == RecordResult(True)
    mixed = guard.admit(["nope", "api"])
    assert mixed.admitted and mixed.resources == ("api",)
    assert guard.admit(["api", "nope"]).refused_by == "api"


# --- configuration ---------------------------------------------------------------------------

# A base with every section on, under a dotted name like the real ones.
BASE = {
    "broker.api": ResourceConfig(
        name="broker.api",
        breaker=BreakerConfig(),
        rate_limit=RateLimitConfig(rate=180, period_s=60, burst=10),
        concurrency=ConcurrencyConfig(limit=8),
        retry_budget=RetryBudgetConfig(),
    )
}


def test_mapping_merges_over_the_base() -> None:
    """A table overrides only its fields; ``false`` turns a section off; new names are added."""
    merged = resources_from_mapping(
        {
            "broker.api": {
                "rate_limit": {"burst": 3},
                "concurrency": False,
                "fail_closed_retry_s": 9.0,
            },
            "vendor.news": {"concurrency": {"limit": 2}, "fail_mode": "closed"},
        },
        base=BASE,
    )
    api = merged["broker.api"]
    assert api.rate_limit == RateLimitConfig(rate=180, period_s=60, burst=3)
    assert (api.concurrency, api.fail_closed_retry_s) == (None, 9.0)
    assert (api.breaker, api.retry_budget) == (BreakerConfig(), RetryBudgetConfig())
    assert merged["vendor.news"] == ResourceConfig(
        name="vendor.news", concurrency=ConcurrencyConfig(limit=2), fail_mode="closed"
    )
    assert BASE["broker.api"].rate_limit == RateLimitConfig(rate=180, period_s=60, burst=10)


def test_mapping_without_a_base_starts_from_nothing() -> None:
    """The building block knows no resource of its own: without a base only the tables given
    are there, each over an unprotected resource of its name."""
    assert resources_from_mapping({}) == {}
    merged = resources_from_mapping({"mail.smtp": {"concurrency": {"limit": 2}}})
    assert merged == {
        "mail.smtp": ResourceConfig(name="mail.smtp", concurrency=ConcurrencyConfig(limit=2))
    }


def test_rate_limit_bound_of_180_a_minute_burst_10_is_191() -> None:
    """180/min with burst 10: T = 333333 µs and any minute holds at most 191 admissions."""
    limit = RateLimitConfig(rate=180, period_s=60, burst=10)
    assert (limit.interval_us, limit.max_in(60.0), limit.max_in(0.0)) == (333_333, 191, 11)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"broker.api": {"rate_limit": {"rate": 0}}}, "resources.broker.api.rate_limit: rate"),
        (
            {"broker.api": {"rate_limit": {"rate": "x"}}},
            "resources.broker.api.rate_limit.rate is a number, got 'x'",
        ),
        ({"broker.api": {"rate_limit": {"cost": 12}}}, "resources.broker.api.rate_limit: cost"),
        (
            {"broker.api": {"rate_limit": {"rat": 5}}},
            "resources.broker.api.rate_limit: unknown key(s) rat; known: burst, cost, period_s,"
            " rate",
        ),
        (
            {"broker.api": {"rate_limit": True}},
            "resources.broker.api.rate_limit is a table (or false to turn it off), got True",
        ),
        (
            {"broker.api": {"ratelimit": {}}},
            "resources.broker.api: unknown key(s) ratelimit; known: breaker, concurrency,",
        ),
        ({"broker.api": 5}, "resources.broker.api is a table of breaker, concurrency,"),
        (
            {"vendor.x": {"rate_limit": {"burst": 2}}},
            "resources.vendor.x.rate_limit: rate is required (the resource has no rate_limit to"
            " start from)",
        ),
        ({"broker.api": {"breaker": {"wait_jitter": 1.0}}}, "resources.broker.api.breaker: wait_"),
        (
            {"broker.api": {"breaker": {"max_wait_in_open_s": 1.0}}},
            "resources.broker.api.breaker: max_wait_in_open_s",
        ),
        (
            {"broker.api": {"fail_mode": "maybe"}},
            "resources.broker.api.fail_mode is 'open' or 'closed', got 'maybe'",
        ),
        ({"broker.api": {"concurrency": {"limit": 0}}}, "resources.broker.api.concurrency: limit"),
        (
            {"broker.api": {"retry_budget": {"retry_cost": 501}}},
            "resources.broker.api.retry_budget: retry_cost",
        ),
        (
            {"broker.api": {"rate_limit": {"rate": "x", "burst": 0.5}, "fail_mode": "no"}},
            "resources.broker.api.rate_limit.rate is a number, got 'x';"
            " resources.broker.api.rate_limit.burst is a whole number, got 0.5;"
            " resources.broker.api.fail_mode is 'open' or 'closed', got 'no'",
        ),
        ({"broker.api": {"breaker": None}}, "resources.broker.api.breaker is a table"),
    ],
)
def test_bad_configuration_names_its_path(raw: dict[str, Any], message: str) -> None:
    """Unknown keys and bad values raise ConfigurationError naming the setting's path."""
    with pytest.raises(ConfigurationError, match="^" + re.escape(message)):
        resources_from_mapping(raw, base=BASE)


@pytest.mark.parametrize(
    ("section", "setting", "value"),
    [
        ("breaker", "minimum_calls", True),
        ("breaker", "window_s", 2.5),
        ("breaker", "permitted_calls_in_half_open", 1.5),
        ("rate_limit", "burst", True),
        ("rate_limit", "burst", 2.5),
        ("concurrency", "limit", 1.5),
    ],
)
def test_integer_settings_refuse_booleans_and_fractions(
    section: str, setting: str, value: object
) -> None:
    """An integer setting given ``true`` or ``2.5`` is a ConfigurationError naming its path."""
    with pytest.raises(ConfigurationError, match=re.escape(f"resources.broker.api.{section}")):
        resources_from_mapping({"broker.api": {section: {setting: value}}}, base=BASE)
