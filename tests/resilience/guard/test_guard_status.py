"""GuardStatus against a real Redis: the figures operators read, driven by the real Guard on a
manual server clock shared by both."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest
import redis

from resilience.errors import ConfigurationError
from resilience.guard.admission import Guard, Outcome, RetryKind
from resilience.guard.resources import (
    BreakerConfig,
    ConcurrencyConfig,
    RateLimitConfig,
    ResourceConfig,
    RetryBudgetConfig,
)
from resilience.guard.status import (
    BreakerState,
    BudgetUsage,
    ConcurrencyUsage,
    GuardStatus,
    RateUsage,
)
from resilience.storage.clock import ManualClock
from resilience.storage.keys import KeySpace

ORDERS, QUIET, API = "api.orders", "api.quiet", "api.rate"
WAIT_S = 30.0
RESOURCES = {
    ORDERS: ResourceConfig(
        name=ORDERS,
        breaker=BreakerConfig(
            window_s=10,
            minimum_calls=4,
            failure_rate_threshold=50,
            slow_call_rate_threshold=100,
            slow_call_duration_s=1.0,
            wait_duration_in_open_s=WAIT_S,
            wait_jitter=0,
            permitted_calls_in_half_open=2,
            probe_lease_s=5,
        ),
        concurrency=ConcurrencyConfig(limit=3, lease_s=10),
        retry_budget=RetryBudgetConfig(capacity=10, retry_cost=4, refill_per_s=0.5),
    ),
    QUIET: ResourceConfig(name=QUIET, breaker=BreakerConfig(window_s=10, minimum_calls=100)),
    API: ResourceConfig(name=API, rate_limit=RateLimitConfig(rate=10, period_s=1, burst=2)),
}


@pytest.fixture
def clock() -> ManualClock:
    """Server time for the guard scripts and the status reader alike."""
    return ManualClock()


@pytest.fixture
def guard(client: redis.Redis, keys: KeySpace, clock: ManualClock) -> Guard:
    """The admitting side, its OPEN cache on the manual clock too."""
    return Guard(
        client, keys, RESOURCES, server_clock=clock, monotonic=clock.now_s, rng=random.Random(7)
    )


@pytest.fixture
def status(client: redis.Redis, keys: KeySpace, clock: ManualClock) -> GuardStatus:
    """The reader under test."""
    return GuardStatus(client, keys, RESOURCES, server_clock=clock)


def call(
    guard: Guard,
    name: str,
    outcome: Outcome = Outcome.OK,
    *,
    duration_s: float = 0.0,
    retry: RetryKind | None = None,
) -> None:
    """One admitted run of ``name`` with its outcome recorded."""
    admission = guard.admit([name])
    assert admission.admitted, admission
    guard.record(admission, outcome, duration_s=duration_s, retry=retry)


def iso(epoch_s: float) -> str:
    """The reader's timestamp form."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")


def test_a_breaker_never_used_reads_closed_with_no_calls(status: GuardStatus) -> None:
    """No hash yet: closed, 0 calls, nothing open; only resources with a breaker are listed."""
    listed = status.breakers()
    assert [s.name for s in listed] == [ORDERS, QUIET]
    fresh = listed[0]
    assert fresh.state is BreakerState.CLOSED
    assert (fresh.calls, fresh.failure_rate, fresh.slow_call_rate) == (0, 0.0, 0.0)
    assert (fresh.open_until, fresh.generation, fresh.probes_in_flight) == (None, 0, 0)
    assert fresh.opened_count == 0


def test_rates_and_calls_cover_the_live_window_only(
    guard: Guard, status: GuardStatus, clock: ManualClock, client: redis.Redis, keys: KeySpace
) -> None:
    """Buckets that left the window stop counting at once, though no call slid the totals."""
    start = clock.now_s()
    for outcome in (Outcome.OK, Outcome.OK, Outcome.FAILED):
        call(guard, QUIET, outcome)
    clock.advance(4)
    call(guard, QUIET, Outcome.FAILED)
    call(guard, QUIET, Outcome.OK, duration_s=20)  # the default slow threshold is 10 s
    now = status.breaker(QUIET)
    assert (now.calls, now.failure_rate, now.slow_call_rate) == (5, 40.0, 20.0)

    clock.set(start + 10)  # the window is (now - 10 s, now]: the first second has left it
    later = status.breaker(QUIET)
    assert (later.calls, later.failure_rate, later.slow_call_rate) == (2, 50.0, 50.0)
    window_key = keys.resource(QUIET)[1]
    assert client.hget(window_key, "calls") == "5"  # the stored total still counts it

    clock.set(start + 13.999)
    assert status.breaker(QUIET).calls == 2
    clock.set(start + 14)
    assert status.breaker(QUIET).calls == 0


def test_open_until_and_probes_follow_the_breaker(
    guard: Guard, status: GuardStatus, clock: ManualClock
) -> None:
    """Tripped: open until now + wait; wait over: half-open; a probe is in flight until its
    lease expires."""
    for _ in range(4):
        call(guard, ORDERS, Outcome.FAILED)
    tripped_at = clock.now_s()
    opened = status.breaker(ORDERS)
    assert opened.state is BreakerState.OPEN
    assert opened.open_until == iso(tripped_at + WAIT_S)
    assert (opened.generation, opened.opened_count, opened.calls) == (1, 1, 0)

    clock.advance(WAIT_S)
    assert status.breaker(ORDERS).state is BreakerState.HALF_OPEN
    assert status.breaker(ORDERS).open_until is None
    probe = guard.admit([ORDERS])
    assert probe.permits[0].probe
    probing = status.breaker(ORDERS)
    assert (probing.state, probing.probes_in_flight, probing.generation) == (
        BreakerState.HALF_OPEN,
        1,
        2,
    )
    clock.advance(5)  # probe_lease_s: its worker is presumed dead
    assert status.breaker(ORDERS).probes_in_flight == 0


def test_force_open_isolates_with_one_event(
    guard: Guard, status: GuardStatus, clock: ManualClock
) -> None:
    """forced_open: one event, every admission refused, a repeat changes nothing."""
    assert status.force_open(ORDERS) == "closed>forced_open"
    assert status.force_open(ORDERS) == ""
    [event] = status.events(ORDERS)
    assert (event["from"], event["to"], event["reason"]) == (
        "closed",
        "forced_open",
        "operator: force_open",
    )
    assert event["at"] == iso(clock.now_s())
    assert (event["generation"], event["rate"]) == (1, None)
    refused = guard.admit([ORDERS])
    assert (refused.admitted, refused.reason) == (False, "breaker forced open")
    forced = status.breaker(ORDERS)
    assert (forced.state, forced.open_until) == (BreakerState.FORCED_OPEN, None)


def test_disable_admits_everything_and_records_nothing(guard: Guard, status: GuardStatus) -> None:
    """disabled: one event; failures far past the threshold neither trip nor count."""
    assert status.disable(ORDERS) == "closed>disabled"
    for _ in range(10):
        call(guard, ORDERS, Outcome.FAILED)
    disabled = status.breaker(ORDERS)
    assert (disabled.state, disabled.calls, disabled.failure_rate) == (
        BreakerState.DISABLED,
        0,
        0.0,
    )
    assert len(status.events(ORDERS)) == 1


def test_reset_closes_with_a_fresh_window_and_no_memory(guard: Guard, status: GuardStatus) -> None:
    """reset: from open to closed with openings forgotten; from closed, the window emptied."""
    for _ in range(4):
        call(guard, ORDERS, Outcome.FAILED)
    assert status.reset(ORDERS) == "open>closed"
    closed = status.breaker(ORDERS)
    assert (closed.state, closed.opened_count, closed.calls) == (BreakerState.CLOSED, 0, 0)
    assert guard.admit([ORDERS]).admitted

    call(guard, ORDERS, Outcome.FAILED)
    call(guard, ORDERS, Outcome.FAILED)
    assert status.breaker(ORDERS).calls == 2
    assert status.reset(ORDERS) == "closed>closed"
    assert status.breaker(ORDERS).calls == 0
    call(guard, ORDERS, Outcome.FAILED)
    call(guard, ORDERS, Outcome.FAILED)  # 2 of 4 minimum calls: the old two would have tripped
    assert status.breaker(ORDERS).state is BreakerState.CLOSED
    transitions = [(e["from"], e["to"]) for e in status.events(ORDERS)]
    assert transitions == [("closed", "open"), ("open", "closed"), ("closed", "closed")]
    assert status.events(ORDERS, count=1)[0]["to"] == "closed"


@pytest.mark.parametrize(
    ("name", "problem"),
    [("nope", "no resource named 'nope'"), (API, "has no breaker")],
)
def test_breaker_actions_refuse_names_without_a_breaker(
    status: GuardStatus, name: str, problem: str
) -> None:
    """An unknown name or a breakerless resource: ConfigurationError naming the breakers."""
    for act in (status.force_open, status.disable, status.reset, status.breaker):
        with pytest.raises(ConfigurationError) as refused:
            act(name)
        assert problem in refused.value.message
        assert f"breakers: {ORDERS}, {QUIET}" in refused.value.message


def test_rate_limit_remaining_and_next_allowed(
    guard: Guard, status: GuardStatus, clock: ManualClock
) -> None:
    """GCRA at 10/s with burst 2: 3 at once, then one per 100 ms."""

    def rate() -> RateUsage | None:
        [limits] = [s for s in status.limits() if s.name == API]
        return limits.rate_limit

    assert rate() == RateUsage(rate=10, period_s=1, burst=2, remaining=3, next_allowed_in_s=0)
    for _ in range(3):
        call(guard, API)
    assert rate() == RateUsage(rate=10, period_s=1, burst=2, remaining=0, next_allowed_in_s=0.1)
    assert not guard.admit([API]).admitted
    clock.advance(0.25)
    assert rate() == RateUsage(rate=10, period_s=1, burst=2, remaining=2, next_allowed_in_s=0)


def test_concurrency_counts_unexpired_leases(
    guard: Guard, status: GuardStatus, clock: ManualClock
) -> None:
    """Leases held count; returned ones do not; expired ones stop counting unreclaimed."""

    def concurrency() -> ConcurrencyUsage | None:
        return next(s for s in status.limits() if s.name == ORDERS).concurrency

    held = [guard.admit([ORDERS]) for _ in range(2)]
    assert concurrency() == ConcurrencyUsage(limit=3, in_use=2)
    guard.record(held[0], Outcome.OK)
    assert concurrency() == ConcurrencyUsage(limit=3, in_use=1)
    clock.advance(10)  # lease_s
    assert concurrency() == ConcurrencyUsage(limit=3, in_use=0)


def test_retry_budget_tokens_include_the_time_refill(
    guard: Guard, status: GuardStatus, clock: ManualClock
) -> None:
    """Full when unused; a retry spends 4; 0.5 tokens/s come back, up to capacity."""

    def budget() -> BudgetUsage | None:
        return next(s for s in status.limits() if s.name == ORDERS).retry_budget

    assert budget() == BudgetUsage(capacity=10, tokens=10)
    call(guard, ORDERS, Outcome.FAILED, retry="retry")
    assert budget() == BudgetUsage(capacity=10, tokens=6)
    clock.advance(4)
    assert budget() == BudgetUsage(capacity=10, tokens=8)
    clock.advance(100)
    assert budget() == BudgetUsage(capacity=10, tokens=10)


def test_limits_list_only_resources_with_limits(status: GuardStatus) -> None:
    """A breaker-only resource has no row; absent protections read as None."""
    rows = {s.name: s for s in status.limits()}
    assert sorted(rows) == [ORDERS, API]
    assert rows[API].concurrency is None
    assert rows[API].retry_budget is None
    assert rows[ORDERS].rate_limit is None


def test_to_dict_puts_the_contract_keys_first(status: GuardStatus) -> None:
    """BreakerStatus.to_dict: CONTRACT keys first, then the extras; both rows are JSON."""
    row = status.breakers()[0].to_dict()
    assert list(row) == [
        "name",
        "state",
        "failure_rate",
        "calls",
        "open_until",
        "slow_call_rate",
        "generation",
        "probes_in_flight",
        "opened_count",
    ]
    assert json.loads(json.dumps(row))["state"] == "closed"
    limits = json.loads(json.dumps(status.limits()[0].to_dict()))
    assert limits["concurrency"] == {"limit": 3, "in_use": 0}


def test_without_a_clock_the_reader_uses_redis_time(client: redis.Redis, keys: KeySpace) -> None:
    """No override: Redis TIME decides what is live and when the breaker opened."""
    guard = Guard(client, keys, RESOURCES)
    reader = GuardStatus(client, keys, RESOURCES)
    redis_now_s = float(client.time()[0])
    call(guard, QUIET, Outcome.FAILED)
    assert reader.breaker(QUIET).calls == 1
    for _ in range(4):
        call(guard, ORDERS, Outcome.FAILED)
    open_until = reader.breaker(ORDERS).open_until
    assert open_until is not None
    seconds = datetime.fromisoformat(open_until).timestamp() - redis_now_s
    assert WAIT_S <= seconds <= WAIT_S + 5


def test_events_refuse_a_count_below_one(status: GuardStatus) -> None:
    """events(count=0) is a caller's mistake, not an empty answer."""
    with pytest.raises(ValueError, match="at least 1"):
        status.events(ORDERS, count=0)


def test_a_long_window_keeps_recording_after_a_quiet_gap(
    client: redis.Redis, keys: KeySpace, clock: ManualClock
) -> None:
    """A one-hour window records a call made 50 minutes after the previous one (the slide
    once unpacked 3 fields per elapsed second, past Lua's limit)."""
    hour = {"hour": ResourceConfig(name="hour", breaker=BreakerConfig(window_s=3600))}
    guard = Guard(client, keys, hour, server_clock=clock)
    reader = GuardStatus(client, keys, hour, server_clock=clock)
    call(guard, "hour", Outcome.FAILED)
    clock.advance(3000)
    call(guard, "hour", Outcome.FAILED)
    assert reader.breaker("hour").calls == 2


def test_decisions_taken_without_redis_are_counted_once_it_answers(
    guard: Guard, status: GuardStatus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While Redis is unreachable each admission is decided by the fail mode and counted in
    the process; the next admission Redis answers adds those counts to the resource's stats,
    so `limits list` shows them fleet-wide (and counts them once)."""
    answering = guard._admit

    def unreachable(**_: object) -> object:
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(guard, "_admit", unreachable)
    assert guard.admit([API]).degraded
    assert guard.admit([API]).degraded
    monkeypatch.setattr(guard, "_admit", answering)
    assert guard.admit([API]).admitted
    assert guard.admit([API]).admitted
    (row,) = [s for s in status.limits() if s.name == API]
    assert row.without_redis == {"admitted": 2}
    assert row.admitted == 2
